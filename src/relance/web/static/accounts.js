// Keys and users pages: each change goes through the JSON API, then the page is read again.
"use strict";

(() => {
  const R = window.relance;
  const $ = (id) => document.getElementById(id);

  function detailText(data) {
    const detail = data && data.detail;
    if (Array.isArray(detail)) return detail.map((d) => (d.field ? d.field + ": " : "") + (d.message || d.msg)).join(" ");
    return String(detail || "refused");
  }

  /** Show a secret (a key, a made-up password) once, in its box. */
  function showSecret(prefix, text, secret) {
    if (text !== null && $(prefix + "-secret-text")) $(prefix + "-secret-text").textContent = text;
    $(prefix + "-secret").textContent = secret;
    $(prefix + "-secret-box").hidden = false;
  }

  /** Swap in the server-rendered list (the secret box stays on screen). */
  async function reloadList(id) {
    const response = await fetch(location.href, { credentials: "same-origin" });
    if (!response.ok || response.redirected) return;
    const page = new DOMParser().parseFromString(await response.text(), "text/html");
    const fresh = page.getElementById(id);
    if (fresh && $(id)) $(id).replaceWith(document.adoptNode(fresh));
    R.localiseTimes(document);
  }

  async function submitForm(form, path, body, errorId) {
    R.clearErrors(form);
    R.showAlert($(errorId), "");
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    const answer = await R.api("POST", path, body);
    button.disabled = false;
    if (!answer.ok) R.showAlert($(errorId), R.showErrors(form, answer.data && answer.data.detail));
    return answer;
  }

  const keyForm = $("key-form");
  if (keyForm) {
    keyForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      const body = { name: $("key-name").value.trim() };
      if ($("key-role").value) body.role = $("key-role").value;
      if ($("key-owner") && $("key-owner").value) body.user_id = Number($("key-owner").value);
      const answer = await submitForm(keyForm, "/api/keys", body, "key-error");
      if (!answer.ok) return;
      showSecret("key", null, answer.data.key);
      keyForm.reset();
      await reloadList("keys-list");
    });
    document.addEventListener("click", async (event) => {
      const button = event.target.closest(".revoke-key");
      if (!button) return;
      if (!confirm("Revoke the key '" + button.dataset.keyName + "'? It stops working at once.")) return;
      button.disabled = true;
      const answer = await R.api("DELETE", "/api/keys/" + encodeURIComponent(button.dataset.keyId));
      if (!answer.ok) {
        button.disabled = false;
        R.showAlert($("key-error"), "Revoke refused: " + detailText(answer.data));
        return;
      }
      await reloadList("keys-list");
    });
  }

  const userForm = $("user-form");
  if (userForm) {
    userForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      const body = {
        email: $("user-email").value.trim(),
        display_name: $("user-name").value.trim(),
        role: $("user-role").value,
      };
      if ($("user-password").value) body.password = $("user-password").value;
      const answer = await submitForm(userForm, "/api/users", body, "user-error");
      if (!answer.ok) return;
      if (answer.data.password) {
        showSecret("user", "The password of " + answer.data.email + ", shown once:", answer.data.password);
      }
      userForm.reset();
      await reloadList("users-list");
    });

    const usersError = (text) => R.showAlert($("users-error"), text);
    async function act(method, path, body) {
      usersError("");
      const answer = await R.api(method, path, body);
      if (!answer.ok) usersError(detailText(answer.data));
      return answer;
    }

    document.addEventListener("change", async (event) => {
      const select = event.target.closest(".user-role");
      if (!select) return;
      const answer = await act("PATCH", "/api/users/" + select.dataset.userId, { role: select.value });
      await reloadList("users-list");
      if (!answer.ok) usersError(detailText(answer.data));
    });

    document.addEventListener("click", async (event) => {
      const button = event.target.closest(".user-disable, .user-reset, .user-sessions");
      if (!button) return;
      const id = button.dataset.userId;
      const email = button.closest("tr").dataset.email;
      let answer;
      if (button.classList.contains("user-disable")) {
        const disable = button.dataset.disabled !== "true";
        if (disable && !confirm("Disable " + email + "? Their sessions and keys stop at once.")) return;
        answer = await act("PATCH", "/api/users/" + id, { disabled: disable });
      } else if (button.classList.contains("user-reset")) {
        if (!confirm("Make up a new password for " + email + "? Their sessions end.")) return;
        answer = await act("POST", "/api/users/" + id + "/password", {});
        if (answer.ok) showSecret("user", "The new password of " + email + ", shown once:", answer.data.password);
      } else {
        answer = await act("DELETE", "/api/users/" + id + "/sessions");
      }
      if (answer.ok) await reloadList("users-list");
    });
  }
})();
