// Contacts page: CSV import through the API, then the list is re-read from the server.
"use strict";

(() => {
  const R = window.relance;
  const $ = (id) => document.getElementById(id);
  const form = $("import-form");

  function showResult(data) {
    $("import-created").textContent = String(data.created);
    $("import-updated").textContent = String(data.updated);
    $("import-rejected-count").textContent = String(data.rejected_total);
    $("rejected-table").tBodies[0].replaceChildren(
      ...data.rejected.map((rejected) => {
        const row = document.createElement("tr");
        for (const text of [String(rejected.row), rejected.error]) {
          const cell = document.createElement("td");
          cell.textContent = text;
          row.append(cell);
        }
        return row;
      }),
    );
    // The answer lists the first rejected rows only; rejected_total counts them all.
    const unlisted = data.rejected_total - data.rejected.length;
    $("rejected-more-count").textContent = String(unlisted);
    $("rejected-more").hidden = unlisted <= 0;
    $("rejected-wrap").hidden = data.rejected_total === 0;
    $("import-result").hidden = false;
  }

  /** Swap in the server-rendered list (and the category filter: the import may add some). */
  async function reloadList() {
    const response = await fetch(location.href, { credentials: "same-origin" });
    if (!response.ok || response.redirected) return;
    const page = new DOMParser().parseFromString(await response.text(), "text/html");
    for (const id of ["contacts-list", "contacts-total", "category"]) {
      const fresh = page.getElementById(id);
      if (fresh && $(id)) $(id).replaceWith(document.adoptNode(fresh));
    }
    R.localiseTimes(document);
  }

  // Categories: create, rename, delete (a category that campaigns not started yet use is
  // refused, naming them: the API's 409 is shown as it is).
  const categories = $("categories-card");
  if (categories) {
    const say = (answer) => {
      const detail = answer.data && answer.data.detail;
      const text = Array.isArray(detail) ? detail.map((d) => d.msg || d.message).join(" ") : String(detail);
      R.showAlert($("categories-error"), text);
    };
    categories.addEventListener("click", async (event) => {
      const button = event.target.closest("[data-category-action]");
      if (!button) return;
      const row = button.closest("[data-category-id]");
      const path = "/api/categories/" + row.dataset.categoryId;
      R.showAlert($("categories-error"), "");
      let answer;
      if (button.dataset.categoryAction === "rename") {
        answer = await R.api("PATCH", path, { name: row.querySelector(".category-name").value.trim() });
      } else {
        if (!confirm("Delete this category? Its contacts stay.")) return;
        answer = await R.api("DELETE", path);
      }
      if (!answer.ok) return say(answer);
      location.reload();
    });
    $("category-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      R.showAlert($("categories-error"), "");
      const answer = await R.api("POST", "/api/categories", { name: $("new-category").value.trim() });
      if (!answer.ok) return say(answer);
      location.reload();
    });
  }

  if (!form) return; // a viewer's page has no import form

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    R.showAlert($("import-error"), "");
    const file = $("import-file").files[0];
    if (!file) {
      R.showAlert($("import-error"), "Choose a CSV file first.");
      return;
    }
    const body = new FormData();
    body.append("file", file);
    $("import-button").disabled = true;
    const answer = await R.api("POST", "/api/contacts/import", body);
    $("import-button").disabled = false;
    if (!answer.ok) {
      const detail = answer.data && answer.data.detail;
      const text = Array.isArray(detail) ? detail.map((d) => d.message || d.msg).join(" ") : String(detail);
      R.showAlert($("import-error"), "Import refused: " + text);
      return;
    }
    showResult(answer.data);
    form.reset();
    await reloadList();
  });
})();
