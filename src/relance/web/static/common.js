// Shared helpers of the dashboard pages. Data is always written with textContent, never as HTML.
"use strict";

window.relance = (() => {
  const loginUrl = () =>
    "/login?next=" + encodeURIComponent(location.pathname + location.search);

  /** Call the JSON API with the session cookie; a 401 goes back to the sign-in page. */
  async function api(method, path, body) {
    const init = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
    if (body instanceof FormData) {
      init.body = body;
    } else if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (error) {
      return { ok: false, status: 0, data: { detail: "The server cannot be reached (" + error.message + ")." } };
    }
    if (response.status === 401) {
      location.assign(loginUrl());
      return new Promise(() => {}); // the page is going away
    }
    let data = null;
    if (response.status !== 204) {
      try {
        data = await response.json();
      } catch (_) {
        data = { detail: "Unexpected answer from the server (HTTP " + response.status + ")." };
      }
    }
    return { ok: response.ok, status: response.status, data };
  }

  /** API times are UTC ISO strings, sometimes with a space instead of the T. */
  function parseTime(value) {
    if (!value) return null;
    let text = String(value).replace(" ", "T");
    if (!/(Z|[+-]\d\d:?\d\d)$/.test(text)) text += "Z";
    const date = new Date(text);
    return Number.isNaN(date.getTime()) ? null : date;
  }

  function formatTime(value) {
    const date = value instanceof Date ? value : parseTime(value);
    if (!date) return "—";
    return date.toLocaleString(undefined, {
      year: "numeric", month: "short", day: "numeric",
      hour: "2-digit", minute: "2-digit", second: "2-digit",
    });
  }

  /** Fill an element with a <time> (or a dash) for an API time. */
  function setTime(element, value) {
    if (!element) return;
    element.replaceChildren();
    const date = parseTime(value);
    if (!date) {
      const dash = document.createElement("span");
      dash.className = "muted";
      dash.textContent = "—";
      element.append(dash);
      return;
    }
    const time = document.createElement("time");
    time.dateTime = date.toISOString();
    time.textContent = formatTime(date);
    element.append(time);
  }

  function localiseTimes(root) {
    for (const time of root.querySelectorAll("time[datetime]")) {
      time.title = time.textContent;
      time.textContent = formatTime(time.getAttribute("datetime"));
    }
  }

  /** Widths are set from data-width here: the CSP allows no inline style attribute. */
  function applyWidths(root) {
    for (const bar of root.querySelectorAll("[data-width]")) {
      bar.style.width = Math.max(0, Math.min(100, Number(bar.dataset.width) || 0)) + "%";
    }
  }

  function percent(part, whole) {
    return whole > 0 ? Math.floor((100 * part) / whole) : 0;
  }

  /** Update a progress bar made by the progress() macro. */
  function setProgress(id, finished, total) {
    const bar = document.getElementById(id);
    if (!bar) return;
    const pct = percent(finished, total);
    bar.setAttribute("aria-valuenow", String(pct));
    bar.firstElementChild.style.width = pct + "%";
    const text = document.getElementById(id + "-text");
    if (text) text.textContent = finished + " / " + total + " · " + pct + " %";
  }

  function setBadge(badge, status) {
    if (!badge) return;
    badge.dataset.status = status;
    badge.textContent = status;
  }

  function showAlert(element, message) {
    if (!element) return;
    element.textContent = message || "";
    element.hidden = !message;
  }

  function clearErrors(form) {
    for (const p of form.querySelectorAll("[data-error-for]")) {
      p.textContent = "";
      p.hidden = true;
    }
    for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
  }

  /** Where an error for ``field`` goes: itself, else its closest parent field (a.b.0 -> a.b -> a). */
  function errorSlot(form, field) {
    const parts = String(field || "").split(".");
    while (parts.length) {
      const slot = form.querySelector('[data-error-for="' + CSS.escape(parts.join(".")) + '"]');
      if (slot) return slot;
      parts.pop();
    }
    return null;
  }

  /** Put each error of an API answer next to its field; return what fits no field. */
  function showErrors(form, detail, hints) {
    const general = [];
    const items = Array.isArray(detail) ? detail : [{ field: null, msg: detail }];
    for (const item of items) {
      const msg = typeof item === "string" ? item : (item && (item.message || item.msg || JSON.stringify(item))) || "invalid";
      let field = item && typeof item === "object" ? item.field : null;
      if (!field && hints) field = hints(msg);
      const slot = field ? errorSlot(form, field) : null;
      if (!slot) {
        general.push(field ? field + ": " + msg : msg);
        continue;
      }
      slot.textContent = slot.textContent ? slot.textContent + " " + msg : msg;
      slot.hidden = false;
      const box = slot.closest("[data-field]");
      const input = box && box.querySelector("input:not([type=checkbox]), textarea, select");
      if (input) input.setAttribute("aria-invalid", "true");
      if (box && box.tagName === "DETAILS") box.open = true;
    }
    return general.join(" ");
  }

  /** Times inside API sentences ("awaiting reply until 2026-...+00:00") in local time. */
  function localiseText(text) {
    return String(text).replace(
      /\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?/g,
      (iso) => formatTime(iso),
    );
  }

  document.addEventListener("DOMContentLoaded", () => {
    localiseTimes(document);
    // The first widths appear at once; later changes slide (see .animate in app.css).
    applyWidths(document);
    requestAnimationFrame(() => requestAnimationFrame(() => document.body.classList.add("animate")));
  });

  return {
    api, parseTime, formatTime, setTime, localiseTimes, applyWidths, percent,
    setProgress, setBadge, showAlert, clearErrors, showErrors, localiseText,
  };
})();
