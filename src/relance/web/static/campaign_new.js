// New campaign form: live audience count and preview, "Save draft" and "Launch".
"use strict";

(() => {
  const { api, showAlert, clearErrors, showErrors } = window.relance;
  const form = document.getElementById("campaign-form");
  const formError = document.getElementById("form-error");
  const $ = (id) => document.getElementById(id);
  let draftId = null; // set once saved: a second try edits that draft instead of making another

  function categoryIds() {
    return [...form.querySelectorAll('input[name="category_ids"]:checked')].map((box) => Number(box.value));
  }

  function lines(text) {
    return text.split("\n").map((line) => line.trim()).filter(Boolean);
  }

  function parseDefaults() {
    const out = {};
    for (const line of lines($("placeholder_defaults").value)) {
      const at = line.indexOf("=");
      if (at < 1) throw { field: "placeholder_defaults", msg: "write each fallback as name=value: " + line };
      out[line.slice(0, at).trim().replace(/^\{|\}$/g, "")] = line.slice(at + 1).trim();
    }
    return out;
  }

  function replyWindowSeconds() {
    const raw = $("window_value").value.trim();
    const value = Number(raw);
    if (!/^\d+$/.test(raw) || value < 1) {
      throw { field: "reply_window_seconds", msg: "enter a whole number greater than 0" };
    }
    return value * Number($("window_unit").value);
  }

  /** The request body, or a thrown {field, msg} for what the page can tell before asking. */
  function body() {
    const data = {
      name: $("name").value.trim(),
      message_1: $("message_1").value,
      message_2: $("message_2").value.trim() ? $("message_2").value : null,
      category_ids: categoryIds(),
      reply_window_seconds: replyWindowSeconds(),
      placeholder_defaults: parseDefaults(),
      message_1_template: null,
    };
    const templateName = $("template_name").value.trim();
    if (templateName) {
      data.message_1_template = {
        name: templateName,
        language: $("template_language").value.trim() || "fr",
        parameters: lines($("template_parameters").value),
      };
    }
    return data;
  }

  // Errors the API gives as one sentence still belong to a field.
  const hints = (msg) =>
    /audience/i.test(msg) ? "category_ids" : /placeholder/i.test(msg) ? "placeholder_defaults" : null;

  function fail(detail) {
    const general = showErrors(form, detail, hints);
    showAlert(formError, general || "Please correct the fields marked in red.");
    const first = form.querySelector('[aria-invalid="true"]');
    if (first) first.focus();
  }

  async function save() {
    clearErrors(form);
    showAlert(formError, "");
    let data;
    try {
      data = body();
    } catch (problem) {
      fail([problem]);
      return null;
    }
    const answer = draftId
      ? await api("PATCH", "/api/campaigns/" + draftId, data)
      : await api("POST", "/api/campaigns", data);
    if (!answer.ok) {
      fail(answer.data && answer.data.detail);
      return null;
    }
    draftId = answer.data.id;
    return answer.data;
  }

  function busy(on) {
    for (const button of form.querySelectorAll(".actions button")) button.disabled = on;
  }

  $("save-draft").addEventListener("click", async () => {
    busy(true);
    const saved = await save();
    busy(false);
    if (saved) location.assign("/campaigns/" + saved.id);
  });

  $("launch").addEventListener("click", async () => {
    const reach = $("audience-count").value || $("audience-count").textContent;
    if (!confirm("Send Message 1 to " + reach + " contact(s) now?")) return;
    busy(true);
    const saved = await save();
    if (!saved) {
      busy(false);
      return;
    }
    const answer = await api("POST", "/api/campaigns/" + saved.id + "/launch");
    busy(false);
    if (answer.ok) {
      location.assign("/campaigns/" + saved.id);
      return;
    }
    fail(answer.data && answer.data.detail);
    const saidDraft = " (Saved as a draft; fix this and press Launch again.)";
    showAlert(formError, formError.textContent + saidDraft);
  });

  // Live audience count -------------------------------------------------------------------
  let countRequest = 0;
  async function refreshCount() {
    const ids = categoryIds();
    const mine = ++countRequest;
    if (!ids.length) {
      $("audience-count").value = "0";
      $("audience-opted-out").textContent = "";
      return;
    }
    const query = ids.map((id) => "category_ids=" + id).join("&");
    const answer = await api("GET", "/api/audience/count?" + query);
    if (mine !== countRequest || !answer.ok) return;
    $("audience-count").value = String(answer.data.reachable);
    $("audience-opted-out").textContent = answer.data.opted_out
      ? "(" + answer.data.opted_out + " opted out, skipped)"
      : "";
  }

  // Live preview --------------------------------------------------------------------------
  let previewTimer = null;
  let previewRequest = 0;
  async function refreshPreview() {
    let defaults = {};
    try {
      defaults = parseDefaults();
    } catch (_) {
      /* shown when saving */
    }
    const mine = ++previewRequest;
    const answer = await api("POST", "/api/preview", {
      message_1: $("message_1").value,
      message_2: $("message_2").value.trim() ? $("message_2").value : null,
      template_parameters: $("template_name").value.trim() ? lines($("template_parameters").value) : [],
      category_ids: categoryIds(),
      placeholder_defaults: defaults,
    });
    if (mine !== previewRequest || !answer.ok) return;
    const data = answer.data;
    const contact = data.contact;
    $("preview-contact").textContent = contact
      ? "As " + [contact.first_name, contact.last_name].filter(Boolean).join(" ") + " (" + contact.phone + ") will read it:"
      : "Choose a category to preview the messages for its first contact.";
    $("preview-message-1").textContent = data.errors.message_1 ? "⚠ " + data.errors.message_1 : data.message_1 || "";
    $("preview-message-2").textContent = data.errors.message_2
      ? "⚠ " + data.errors.message_2
      : data.message_2 || "(no Message 2: a contact is done once Message 1 is sent)";
    const parameters = $("preview-parameters");
    parameters.replaceChildren(
      ...data.template_parameters.map((value, i) => {
        const item = document.createElement("li");
        const error = data.errors["template_parameters." + i];
        item.textContent = error ? "⚠ " + error : value;
        return item;
      }),
    );
    $("preview-template").hidden = data.template_parameters.length === 0;
    const missing = $("preview-missing");
    missing.hidden = !(contact && data.missing.length);
    missing.textContent = missing.hidden
      ? ""
      : "No value for " + data.missing.map((name) => "{" + name + "}").join(", ") +
        " for this contact: add a fallback value, or launching will be refused.";
  }

  function schedulePreview() {
    clearTimeout(previewTimer);
    previewTimer = setTimeout(refreshPreview, 250);
  }

  // Editing a field clears what was said about it.
  function clearFieldError(target) {
    const box = target.closest("[data-field]");
    if (!box) return;
    for (const slot of box.querySelectorAll("[data-error-for]")) {
      slot.textContent = "";
      slot.hidden = true;
    }
    for (const input of box.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
  }

  form.addEventListener("input", (event) => {
    clearFieldError(event.target);
    if (event.target.name !== "category_ids") schedulePreview();
  });
  form.addEventListener("change", (event) => {
    clearFieldError(event.target);
    if (event.target.name === "category_ids") {
      refreshCount();
      schedulePreview();
    }
  });
  form.addEventListener("submit", (event) => event.preventDefault());
  refreshCount();
  refreshPreview();
})();
