// New campaign form: live audience count and preview, WhatsApp templates, "Save draft" and "Launch".
"use strict";

(() => {
  const R = window.relance;
  const { api, showAlert, clearErrors, showErrors } = R;
  const form = document.getElementById("campaign-form");
  const formError = document.getElementById("form-error");
  const $ = (id) => document.getElementById(id);
  // Set once saved (or when editing): a second try edits that draft instead of making another.
  let draftId = form.dataset.campaignId ? Number(form.dataset.campaignId) : null;
  const editing = draftId !== null;
  const chosen = new Map(JSON.parse(form.dataset.contacts || "[]").map((c) => [c.id, c]));
  let reachable = 0;

  // WhatsApp templates ----------------------------------------------------------------------
  // With the meta provider, GET /api/templates lists the business account's templates; each
  // picker asks for the values the chosen one needs (placeholders like {first_name} allowed).
  let templates = [];
  let autoMessage1 = ""; // the Message 1 text last written from the template, until edited

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function parameterLabel(p) {
    if (p.component === "header") return p.kind === "text" ? "Header {{" + p.name + "}}" : "Header " + p.kind + " (link)";
    if (p.component === "body") return "Body {{" + p.name + "}}";
    if (p.kind === "url_suffix") return "Button " + (p.button_index + 1) + ": end of its URL";
    return "Button " + (p.button_index + 1) + " “" + p.name + "”: payload (optional)";
  }

  function makePicker(box) {
    const prefix = box.dataset.templatePrefix;
    const select = box.querySelector("select");
    const holder = box.querySelector("[data-template-parameters]");
    const info = box.querySelector("[data-template-info]");
    let chosen = null;

    function render() {
      holder.replaceChildren();
      info.textContent = "";
      if (!chosen) return;
      info.textContent = [chosen.category, chosen.language, chosen.status].filter(Boolean).join(" · ") +
        (chosen.status === "APPROVED" ? "" : " — WhatsApp sends only approved templates");
      for (const p of chosen.parameters) {
        const id = prefix + "." + p.field;
        const field = element("div", "field");
        field.dataset.field = id;
        const label = element("label", "", parameterLabel(p));
        label.htmlFor = id;
        const input = element("input");
        input.id = id;
        input.dataset.templateField = p.field;
        input.maxLength = p.kind === "text" && p.component === "header" ? 60 : p.component === "header" ? 2000 : 1024;
        input.placeholder = p.example || "";
        const hint = element("p", "hint", p.example ? "Example: " + p.example : "");
        const error = element("p", "field-error");
        error.dataset.errorFor = id;
        error.hidden = true;
        field.append(label, input, hint, error);
        holder.append(field);
      }
    }

    /** The TemplateIn the campaign stores, or null. */
    function value() {
      if (!chosen) return null;
      const out = { name: chosen.name, language: chosen.language };
      const buttons = [];
      for (const p of chosen.parameters) {
        const input = holder.querySelector('[data-template-field="' + CSS.escape(p.field) + '"]');
        const text = input ? input.value : "";
        if (!p.required && !text.trim()) continue;
        const [part, key, sub] = p.field.split(".");
        if (p.field === "header.text") {
          out.header = { format: "text", text };
          if (!/^\d+$/.test(p.name)) out.header.parameter_name = p.name;
        } else if (p.field === "header.link") {
          out.header = { format: p.kind, link: text.trim() };
        } else if (part === "parameters") {
          (out.parameters = out.parameters || [])[Number(key)] = text;
        } else if (part === "named_parameters") {
          (out.named_parameters = out.named_parameters || {})[key] = text;
        } else if (part === "buttons") {
          // The API names a button's errors by its place in this list: point them at its input.
          const slot = input && input.parentElement.querySelector("[data-error-for]");
          if (slot) slot.dataset.errorFor = prefix + ".buttons." + buttons.length + "." + sub;
          buttons.push({ index: Number(key), sub_type: sub === "payload" ? "quick_reply" : "url", [sub]: text });
        }
      }
      if (buttons.length) out.buttons = buttons;
      return out;
    }

    /** The chosen template's body with its parameters as typed: Message 1's own copy. */
    function bodyText() {
      if (!chosen) return "";
      return chosen.body.replace(/\{\{\s*([A-Za-z0-9_]+)\s*\}\}/g, (whole, name) => {
        const p = chosen.parameters.find((q) => q.component === "body" && q.name === name);
        const input = p && holder.querySelector('[data-template-field="' + CSS.escape(p.field) + '"]');
        return input && input.value ? input.value : whole;
      });
    }

    function fill(items) {
      select.replaceChildren(element("option", "", "No template"));
      select.firstChild.value = "";
      items.forEach((t, i) => {
        const option = element("option", "", t.name + " (" + t.language + ")" + (t.status === "APPROVED" ? "" : " · " + t.status));
        option.value = String(i);
        if (t.unsupported) {
          option.disabled = true;
          option.textContent += " — " + t.unsupported;
        }
        select.append(option);
      });
      box.hidden = false;
    }

    select.addEventListener("change", () => {
      chosen = select.value === "" ? null : templates[Number(select.value)];
      render();
      if (prefix === "message_1_template") writeMessage1();
      schedulePreview();
    });
    holder.addEventListener("input", () => {
      if (prefix === "message_1_template") writeMessage1();
    });
    return { prefix, value, bodyText, fill };
  }

  const pickers = [...document.querySelectorAll("[data-template-prefix]")].map(makePicker);

  /** Message 1 follows the template while the user has not written one of their own. */
  function writeMessage1() {
    const text = pickers[0].bodyText();
    const message1 = $("message_1");
    if (message1.value !== "" && message1.value !== autoMessage1) return;
    message1.value = text;
    autoMessage1 = text;
  }

  async function loadTemplates() {
    const answer = await api("GET", "/api/templates");
    const status = $("templates-status");
    if (!answer.ok) {
      status.textContent = "WhatsApp templates could not be loaded: " + (answer.data && answer.data.detail);
      return;
    }
    if (answer.data.provider !== "meta") {
      status.textContent = answer.data.reason || "";
      return;
    }
    templates = answer.data.items;
    status.textContent = templates.length ? "" : "The business account has no template yet: create one in WhatsApp Manager.";
    for (const picker of pickers) picker.fill(templates);
  }

  function contactIds() {
    return [...chosen.keys()];
  }

  function scheduledAt() {
    const value = $("scheduled_at").value;
    if (!value) return null;
    const when = new Date(value);
    if (Number.isNaN(when.getTime())) throw { field: "scheduled_at", msg: "enter a date and time" };
    return when.toISOString();
  }

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
      contact_ids: contactIds(),
      reply_window_seconds: replyWindowSeconds(),
      placeholder_defaults: parseDefaults(),
      scheduled_at: scheduledAt(),
    };
    for (const picker of pickers) {
      const value = picker.value();
      // Editing keeps a stored template the picker did not load (none listed without meta).
      if (value !== null || !editing) data[picker.prefix] = value;
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
    if (reachable === 0) return; // the button says why it is disabled
    let when = null;
    try {
      when = scheduledAt();
    } catch (_) {
      /* said by save() */
    }
    const question = when
      ? "Schedule Message 1 to " + reachable + " contact(s) for " + R.formatTime(when) + "?"
      : "Send Message 1 to " + reachable + " contact(s) now?";
    if (!confirm(question)) return;
    busy(true);
    const saved = await save();
    if (!saved) {
      busy(false);
      return;
    }
    if (saved.status === "scheduled") {
      // An edited scheduled campaign stays scheduled: launching it now would start it at once.
      location.assign("/campaigns/" + saved.id);
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

  // The launch button: "Schedule" with a start time; disabled, with why, without an audience.
  function showReach(count) {
    if (count !== null) reachable = count;
    const launch = $("launch");
    launch.textContent = $("scheduled_at").value ? "Schedule" : "Launch";
    launch.disabled = reachable === 0;
    $("launch-blocked").hidden = reachable !== 0;
    $("launch-blocked").textContent =
      "Nothing to send yet: the audience has no reachable contact. Choose a category or contacts.";
  }

  // Individual contacts -------------------------------------------------------------------
  function renderChosen() {
    $("chosen-contacts").replaceChildren(
      ...[...chosen.values()].map((contact) => {
        const item = element("li", "chip", (contact.name || contact.phone) + " ");
        item.dataset.contactId = String(contact.id);
        const remove = element("button", "link", "×");
        remove.type = "button";
        remove.setAttribute("aria-label", "Remove " + (contact.name || contact.phone));
        remove.addEventListener("click", () => {
          chosen.delete(contact.id);
          renderChosen();
          refreshCount();
          schedulePreview();
        });
        item.append(remove);
        return item;
      }),
    );
  }

  let searchTimer = null;
  $("contact-search").addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(searchContacts, 250);
  });

  async function searchContacts() {
    const text = $("contact-search").value.trim();
    if (!text) {
      $("contact-results").replaceChildren();
      return;
    }
    const answer = await api("GET", "/api/contacts?limit=8&search=" + encodeURIComponent(text));
    if (!answer.ok) return;
    $("contact-results").replaceChildren(
      ...answer.data.items.map((contact) => {
        const name = [contact.first_name, contact.last_name].filter(Boolean).join(" ");
        const item = element("li", "", "");
        const add = element("button", "", "Add " + (name || contact.phone) + " · " + contact.phone);
        add.type = "button";
        add.disabled = chosen.has(contact.id) || contact.opted_out;
        add.addEventListener("click", () => {
          chosen.set(contact.id, { id: contact.id, phone: contact.phone, name });
          renderChosen();
          $("contact-results").replaceChildren();
          $("contact-search").value = "";
          refreshCount();
          schedulePreview();
        });
        item.append(add);
        return item;
      }),
    );
  }

  // Placeholders some contacts lack, over the whole audience, with a fallback to give in place.
  function setDefault(name, value) {
    const kept = lines($("placeholder_defaults").value).filter((line) => line.split("=")[0].trim() !== name);
    if (value) kept.push(name + "=" + value);
    $("placeholder_defaults").value = kept.join("\n");
  }

  function showAudienceMissing(items) {
    const box = $("audience-missing");
    const focused = document.activeElement && document.activeElement.dataset.fallback;
    if (focused) return; // typing a fallback: keep its input
    box.hidden = items.length === 0;
    box.replaceChildren(
      ...items.map((item) => {
        const row = element("p", "missing-row", "");
        row.dataset.placeholder = item.placeholder;
        const examples = item.examples.map((e) => (e.name ? e.name + " " : "") + e.phone).join(", ");
        row.append(
          element(
            "span",
            "",
            "{" + item.placeholder + "} has no value for " + item.contacts + " contact(s)" +
              (examples ? " (e.g. " + examples + ")" : "") + ". Fallback: ",
          ),
        );
        const input = document.createElement("input");
        input.type = "text";
        input.dataset.fallback = item.placeholder;
        input.setAttribute("aria-label", "Fallback for {" + item.placeholder + "}");
        input.addEventListener("change", () => {
          setDefault(item.placeholder, input.value.trim());
          input.blur();
          schedulePreview();
        });
        row.append(input);
        return row;
      }),
    );
  }

  // Live audience count -------------------------------------------------------------------
  let countRequest = 0;
  async function refreshCount() {
    const ids = categoryIds();
    const mine = ++countRequest;
    if (!ids.length && !chosen.size) {
      $("audience-count").value = "0";
      $("audience-opted-out").textContent = "";
      showReach(0);
      return;
    }
    const query = [
      ...ids.map((id) => "category_ids=" + id),
      ...contactIds().map((id) => "contact_ids=" + id),
    ].join("&");
    const answer = await api("GET", "/api/audience/count?" + query);
    if (mine !== countRequest || !answer.ok) return;
    $("audience-count").value = String(answer.data.reachable);
    showReach(answer.data.reachable);
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
    const request = {
      message_1: $("message_1").value,
      message_2: $("message_2").value.trim() ? $("message_2").value : null,
      category_ids: categoryIds(),
      contact_ids: contactIds(),
      placeholder_defaults: defaults,
    };
    for (const picker of pickers) request[picker.prefix] = picker.value();
    const answer = await api("POST", "/api/preview", request);
    if (mine !== previewRequest) return;
    if (!answer.ok) {
      // A template value the API refuses (an unclosed placeholder...): said by its preview.
      const detail = Array.isArray(answer.data && answer.data.detail) ? answer.data.detail : [];
      for (const picker of pickers) {
        const said = detail.filter((d) => String(d.field).startsWith(picker.prefix)).map((d) => d.field + ": " + (d.message || d.msg));
        if (said.length) showTemplatePreview(picker.prefix, null, said);
      }
      return;
    }
    const data = answer.data;
    const contact = data.contact;
    $("preview-contact").textContent = contact
      ? "As " + [contact.first_name, contact.last_name].filter(Boolean).join(" ") + " (" + contact.phone + ") will read it:"
      : "Choose a category to preview the messages for its first contact.";
    $("preview-message-1").textContent = data.errors.message_1 ? "⚠ " + data.errors.message_1 : data.message_1 || "";
    $("preview-message-2").textContent = data.errors.message_2
      ? "⚠ " + data.errors.message_2
      : data.message_2 || "(no Message 2: a contact is done once Message 1 is sent)";
    for (const picker of pickers) {
      const errors = Object.entries(data.errors)
        .filter(([field]) => field.startsWith(picker.prefix + "."))
        .map(([field, msg]) => field + ": " + msg);
      showTemplatePreview(picker.prefix, data[picker.prefix], errors);
    }
    showAudienceMissing(data.audience_missing || []);
    const missing = $("preview-missing");
    missing.hidden = !(contact && data.missing.length);
    missing.textContent = missing.hidden
      ? ""
      : "No value for " + data.missing.map((name) => "{" + name + "}").join(", ") +
        " for this contact: add a fallback value, or launching will be refused.";
  }

  /** A template as the sample contact reads it: header, body, footer, buttons. */
  function showTemplatePreview(prefix, template, problems) {
    const box = $(prefix + "-preview");
    const part = (name) => box.querySelector('[data-preview="' + name + '"]');
    box.hidden = !template && !problems.length;
    const note = part("note");
    const said = [template && template.note, ...problems.map((p) => "⚠ " + p)].filter(Boolean);
    note.textContent = said.join(" ");
    note.hidden = !said.length;
    if (!template) return;
    part("name").textContent = template.name + " (" + template.language + ")" + (template.status ? " · " + template.status : "");
    const header = template.header;
    part("header").textContent = !header ? "" : header.format === "text" ? header.text || "" : "[" + header.format + "] " + (header.link || "");
    part("body").textContent = template.body !== null && template.body !== undefined
      ? template.body
      : Object.entries(template.values).map(([field, value]) => field + ": " + value).join("\n");
    part("footer").textContent = template.footer || "";
    part("buttons").replaceChildren(
      ...template.buttons.map((button) => {
        const item = element("li", "", button.text);
        const detail = button.url || button.payload;
        if (detail) item.append(element("small", "", detail));
        return item;
      }),
    );
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
  $("scheduled_at").addEventListener("input", showReach.bind(null, null));
  const initialTime = R.parseTime($("scheduled_at").dataset.value);
  if (initialTime) {
    // datetime-local wants the local wall time, without a zone.
    const local = new Date(initialTime.getTime() - initialTime.getTimezoneOffset() * 60000);
    $("scheduled_at").value = local.toISOString().slice(0, 16);
  }
  renderChosen();
  refreshCount();
  refreshPreview();
  loadTemplates();
})();
