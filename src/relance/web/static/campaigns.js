// Campaign list: the rows of running campaigns follow their stats without a reload.
"use strict";

(() => {
  const R = window.relance;
  const ACTIVE = ["sending", "paused", "scheduled"];

  function activeRows() {
    return [...document.querySelectorAll(".campaign-item")].filter((row) => ACTIVE.includes(row.dataset.status));
  }

  async function refresh(row) {
    const answer = await R.api("GET", "/api/campaigns/" + row.dataset.campaignId + "/stats");
    if (!answer.ok) return;
    const stats = answer.data;
    row.dataset.status = stats.status;
    R.setBadge(row.querySelector(".badge"), stats.status);
    const pct = R.percent(stats.finished, stats.total);
    const bar = row.querySelector(".progress");
    bar.setAttribute("aria-valuenow", String(pct));
    bar.firstElementChild.style.width = pct + "%";
    row.querySelector(".progress-text").textContent = stats.finished + " / " + stats.total + " · " + pct + " %";
    for (const cell of row.querySelectorAll("[data-stat]")) {
      if (cell.dataset.stat === "completed_at") R.setTime(cell, stats.completed_at);
      else if (cell.dataset.stat in stats) cell.textContent = String(stats[cell.dataset.stat]);
    }
  }

  async function tick() {
    const rows = activeRows();
    await Promise.all(rows.map(refresh));
    if (activeRows().length) setTimeout(tick, 3000);
  }

  if (activeRows().length) setTimeout(tick, 3000);
})();
