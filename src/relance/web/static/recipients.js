// Campaign page: the recipients table (filters, keyset pages), the export link that follows
// the filters, and the results card (rates, time to reply, estimated finish).
"use strict";

(() => {
  const R = window.relance;
  const root = document.getElementById("campaign");
  const id = root.dataset.campaignId;
  const $ = (elementId) => document.getElementById(elementId);
  const form = $("recipient-filters");
  let next = null;
  let loading = false;

  function query() {
    const params = new URLSearchParams();
    for (const box of form.querySelectorAll('input[name="state"]:checked')) params.append("state", box.value);
    const search = form.elements.search.value.trim();
    if (search) params.set("search", search);
    const code = form.elements.error_code.value.trim();
    if (code) params.set("error_code", code);
    const sort = form.elements.sort.value;
    if (sort && sort !== "id") params.set("sort", sort);
    return params;
  }

  // The last timestamp a recipient reached: what "Since" shows.
  const STAMPS = ["message_2_sent_at", "replied_at", "no_interaction_at", "failed_at", "opted_out_at",
                  "cancelled_at", "done_at", "awaiting_reply_at", "queued_at"];

  function row(item) {
    const tr = document.createElement("tr");
    tr.dataset.state = item.state;
    tr.dataset.recipientId = String(item.id);
    const name = [item.first_name, item.last_name].filter(Boolean).join(" ");
    const cells = [
      item.phone ?? "(deleted contact)",
      name,
      item.state.replaceAll("_", " "),
      item.reply_text || "",
      item.error_code || "",
      item.error || "",
    ];
    for (const text of cells) {
      const cell = document.createElement("td");
      cell.textContent = text;
      tr.append(cell);
    }
    const since = document.createElement("td");
    R.setTime(since, STAMPS.map((k) => item[k]).find(Boolean));
    tr.append(since);
    return tr;
  }

  async function load(more) {
    if (loading) return;
    loading = true;
    const params = query();
    if (more && next) params.set("after", next);
    params.set("limit", "50");
    const answer = await R.api("GET", "/api/campaigns/" + id + "/recipients?" + params);
    loading = false;
    const body = $("recipients-table").tBodies[0];
    if (!answer.ok) {
      const detail = answer.data && answer.data.detail;
      R.showAlert($("recipients-error"), R.showErrors(form, detail) || "");
      return;
    }
    R.showAlert($("recipients-error"), "");
    const rows = answer.data.items.map(row);
    if (more) body.append(...rows);
    else body.replaceChildren(...rows);
    next = answer.data.next;
    $("recipients-more").hidden = !next;
    $("recipients-empty").hidden = body.rows.length > 0;
    const exportLink = $("export");
    if (exportLink) {
      const filters = query();
      exportLink.href = "/api/campaigns/" + id + "/recipients.csv" + (filters.size ? "?" + filters : "");
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    load(false);
  });
  for (const box of form.querySelectorAll('input[name="state"], select')) {
    box.addEventListener("change", () => load(false));
  }
  $("recipients-more").addEventListener("click", () => load(true));

  // Results ---------------------------------------------------------------------------------
  function rate(value) {
    return value === null || value === undefined ? "—" : (100 * value).toFixed(1) + " %";
  }

  function elapsed(seconds) {
    if (seconds === null || seconds === undefined) return "—";
    const whole = Math.round(seconds);
    const part = (n, size, unit, small, smallSize) => {
      const rest = Math.floor((n % size) / smallSize);
      return Math.floor(n / size) + " " + unit + (rest ? " " + rest + " " + small : "");
    };
    if (whole >= 86400) return part(whole, 86400, "d", "h", 3600);
    if (whole >= 3600) return part(whole, 3600, "h", "min", 60);
    if (whole >= 60) return part(whole, 60, "min", "s", 1);
    return whole + " s";
  }

  /** Called by campaign.js with each stats it receives. */
  function renderResults(stats) {
    for (const cell of document.querySelectorAll("[data-rate]")) {
      if (stats.rates) cell.textContent = rate(stats.rates[cell.dataset.rate]);
    }
    if (stats.reply_time) {
      $("reply-median").textContent = elapsed(stats.reply_time.median_seconds);
      $("reply-p90").textContent = elapsed(stats.reply_time.p90_seconds);
    }
    $("estimate-wrap").hidden = !stats.estimated_finish_at;
    R.setTime($("estimated-finish"), stats.estimated_finish_at);
    const cancelled = stats.status === "cancelled";
    $("ended-label").textContent = cancelled ? "Cancelled" : "Completed";
    R.setTime($("completed-at"), cancelled ? stats.cancelled_at : stats.completed_at);
  }

  window.relanceResults = { renderResults, reload: () => load(false) };
  load(false);
})();
