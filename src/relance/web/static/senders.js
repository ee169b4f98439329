// Senders page: add a number, pause or resume one, through the JSON API; then the list is read again.
"use strict";

(() => {
  const R = window.relance;
  const $ = (id) => document.getElementById(id);

  async function reloadList() {
    const response = await fetch(location.href, { credentials: "same-origin" });
    if (!response.ok || response.redirected) return;
    const page = new DOMParser().parseFromString(await response.text(), "text/html");
    const fresh = page.getElementById("senders-list");
    if (fresh && $("senders-list")) $("senders-list").replaceWith(document.adoptNode(fresh));
  }

  const form = $("sender-form");
  if (form) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      R.clearErrors(form);
      R.showAlert($("sender-error"), "");
      const body = { name: $("sender-name").value.trim(), provider: form.dataset.provider };
      const ref = $("sender-ref");
      if (ref && ref.value.trim()) body[ref.dataset.ref] = ref.value.trim();
      if ($("sender-display").value.trim()) body.display_number = $("sender-display").value.trim();
      if ($("sender-limit").value) body.messaging_limit = Number($("sender-limit").value);
      if ($("sender-portfolio").value.trim()) body.portfolio = $("sender-portfolio").value.trim();
      const button = form.querySelector("button[type=submit]");
      button.disabled = true;
      const answer = await R.api("POST", "/api/senders", body);
      button.disabled = false;
      if (!answer.ok) {
        R.showAlert($("sender-error"), R.showErrors(form, answer.data && answer.data.detail));
        return;
      }
      form.reset();
      await reloadList();
    });
  }

  document.addEventListener("click", async (event) => {
    const button = event.target.closest(".sender-status");
    if (!button) return;
    button.disabled = true;
    const path = "/api/senders/" + encodeURIComponent(button.dataset.senderId);
    const answer = await R.api("PATCH", path, { status: button.dataset.status });
    if (!answer.ok) {
      button.disabled = false;
      R.showAlert($("senders-error"), String((answer.data && answer.data.detail) || "refused"));
      return;
    }
    await reloadList();
  });
})();
