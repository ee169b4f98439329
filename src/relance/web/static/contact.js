// Contact page: save the form (PATCH), opt out or back in, delete; the page reloads to show
// the result with its history, as the server says it.
"use strict";

(() => {
  const R = window.relance;
  const $ = (id) => document.getElementById(id);
  const id = $("contact").dataset.contactId;
  const form = $("contact-form");
  const path = "/api/contacts/" + id;

  function attributes() {
    const out = {};
    for (const line of $("attributes").value.split("\n").map((l) => l.trim()).filter(Boolean)) {
      const at = line.indexOf("=");
      if (at < 1) throw { field: "attributes", msg: "write each attribute as name=value: " + line };
      out[line.slice(0, at).trim()] = line.slice(at + 1).trim();
    }
    return out;
  }

  async function send(method, body) {
    R.clearErrors(form);
    R.showAlert($("contact-error"), "");
    const answer = await R.api(method, path, body);
    if (!answer.ok) {
      const general = R.showErrors(form, answer.data && answer.data.detail);
      R.showAlert($("contact-error"), general || "Please correct the fields marked in red.");
    }
    return answer;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    let body;
    try {
      body = {
        phone: $("phone").value.trim(),
        first_name: $("first_name").value.trim(),
        last_name: $("last_name").value.trim(),
        attributes: attributes(),
        category_ids: [...form.querySelectorAll('input[name="category_ids"]:checked')].map((b) => Number(b.value)),
      };
    } catch (problem) {
      R.showAlert($("contact-error"), R.showErrors(form, [problem]));
      return;
    }
    const answer = await send("PATCH", body);
    if (answer.ok) location.assign(location.pathname + "?saved=1");
  });

  for (const [button, optedOut, question] of [
    ["opt-out", true, "Opt this contact out? No campaign will send it Message 1, and its open campaigns end for it."],
    ["opt-in", false, "Opt this contact back in? Later campaigns may send it Message 1 again."],
  ]) {
    if (!$(button)) continue;
    $(button).addEventListener("click", async () => {
      if (!confirm(question)) return;
      const answer = await send("PATCH", { opted_out: optedOut });
      if (answer.ok) location.reload();
    });
  }

  if ($("delete-contact")) {
    $("delete-contact").addEventListener("click", async () => {
      if (!confirm("Delete this contact and erase its personal data? This cannot be undone.")) return;
      const answer = await send("DELETE");
      if (answer.ok) location.assign("/contacts");
    });
  }

  $("contact-saved").hidden = !new URLSearchParams(location.search).has("saved");
})();
