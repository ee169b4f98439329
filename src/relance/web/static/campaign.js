// Campaign page: counters, progress, funnel and status follow the SSE stream; actions; chart.
"use strict";

(() => {
  const R = window.relance;
  const root = document.getElementById("campaign");
  const id = root.dataset.campaignId;
  const $ = (elementId) => document.getElementById(elementId);
  const FINAL = ["completed", "cancelled"];
  let status = root.dataset.status;
  let failed = Number(document.querySelector('[data-stat="failed"]').textContent) || 0;
  let limited = Number(document.querySelector('[data-stat="limited"]').textContent) || 0;
  let failuresShown = -1;
  let source = null;
  let lastStats = "";
  let blockingAt = 0;
  let blockingTimer = null;
  let timelineAt = 0;

  const live = () => !FINAL.includes(status) && status !== "draft";

  function showButtons() {
    const visible = {
      launch: status === "draft" || status === "scheduled",
      pause: status === "sending",
      resume: status === "paused",
      "retry-failed": failed > 0 && ["sending", "paused", "completed"].includes(status),
      "retry-limited": limited > 0 && ["sending", "paused", "completed"].includes(status),
      cancel: ["sending", "paused", "scheduled"].includes(status),
      delete: !["sending", "paused"].includes(status),
    };
    for (const button of document.querySelectorAll("#actions [data-action]")) {
      button.hidden = !visible[button.dataset.action];
    }
  }

  function setStatus(next, reason) {
    status = next;
    root.dataset.status = next;
    R.setBadge($("status"), next);
    if (reason !== undefined) {
      $("status-reason").textContent = reason || "";
      $("status-reason").hidden = !reason;
    }
    showButtons();
  }

  function render(stats) {
    for (const cell of document.querySelectorAll("[data-stat]")) {
      const key = cell.dataset.stat;
      if (key in stats) cell.textContent = String(stats[key]);
    }
    R.setProgress("progress", stats.finished, stats.total);
    for (const row of document.querySelectorAll("[data-funnel]")) {
      const value = stats[row.dataset.funnel] || 0;
      row.querySelector(".funnel-bar").style.width = R.percent(value, stats.total) + "%";
      row.querySelector(".funnel-value").textContent = String(value);
    }
    failed = stats.failed;
    limited = stats.limited;
    setStatus(stats.status, stats.status_reason);
    if (failed !== failuresShown) refreshFailures();
    R.setTime($("started-at"), stats.started_at);
    window.relanceResults.renderResults(stats);
    const pacing = stats.pacing;
    $("pacing").hidden = !pacing;
    $("pacing").textContent = pacing ? "Sending waits: " + pacing.detail : "";
  }

  // Live updates ---------------------------------------------------------------------------
  function follow() {
    if (source || !live()) return;
    source = new EventSource("/api/campaigns/" + id + "/events");
    $("live").hidden = false;
    source.addEventListener("stats", (event) => {
      if (event.data === lastStats) return;
      lastStats = event.data;
      render(JSON.parse(event.data));
      refreshBlockingSoon();
    });
    source.addEventListener("end", async () => {
      stopFollowing();
      refreshBlocking();
      refreshTimeline();
      window.relanceResults.reload();
      const answer = await R.api("GET", "/api/campaigns/" + id + "/stats"); // with reply times
      if (answer.ok) render(answer.data);
    });
    source.addEventListener("error", () => {
      // The browser reconnects by itself after a network error; a refusal closes the stream.
      if (source && source.readyState === EventSource.CLOSED) {
        stopFollowing();
        setTimeout(recover, 3000);
      }
    });
  }

  function stopFollowing() {
    if (source) source.close();
    source = null;
    $("live").hidden = true;
  }

  async function recover() {
    const answer = await R.api("GET", "/api/campaigns/" + id + "/stats"); // a 401 signs in again
    if (answer.ok) render(answer.data);
    follow();
  }

  // While the stats move: the blocking list at most every 2 s, the chart every 10 s (it counts
  // the campaign's sent messages, heavier on a big campaign); both once more at the end.
  function refreshBlockingSoon() {
    if (blockingTimer) return;
    const wait = Math.max(0, 2000 - (Date.now() - blockingAt));
    blockingTimer = setTimeout(() => {
      blockingTimer = null;
      refreshBlocking();
      if (Date.now() - timelineAt >= 10000) refreshTimeline();
    }, wait);
  }

  async function refreshBlocking() {
    blockingAt = Date.now();
    const answer = await R.api("GET", "/api/campaigns/" + id + "/blocking?limit=50");
    if (!answer.ok) return;
    const data = answer.data;
    const body = $("blocking-table").tBodies[0];
    body.replaceChildren(
      ...data.items.map((item) => {
        const row = document.createElement("tr");
        for (const text of [item.phone ?? "(deleted contact)", item.state.replaceAll("_", " "), R.localiseText(item.reason)]) {
          const cell = document.createElement("td");
          cell.textContent = text;
          row.append(cell);
        }
        return row;
      }),
    );
    $("blocking-table").hidden = data.items.length === 0;
    $("blocking-empty").hidden = data.open_recipients > 0;
    $("blocking-empty").textContent = ["draft", "scheduled"].includes(status)
      ? "Not launched yet: nothing is sent before the launch" + (status === "scheduled" ? " at its scheduled time." : ".")
      : "Nothing keeps this campaign from completing.";
    $("blocking-count").textContent = data.open_recipients
      ? data.open_recipients + (data.items.length < data.open_recipients ? " (first " + data.items.length + " shown)" : "")
      : "";
    if (data.paused_by && status === "sending") {
      $("pacing").hidden = false;
      $("pacing").textContent = "Sending waits: " + data.paused_by.replaceAll("_", " ");
    }
  }

  // Failures, each with the provider's code and words ---------------------------------------
  async function refreshFailures() {
    failuresShown = failed;
    $("failures").hidden = failed === 0;
    if (failed === 0) return;
    const answer = await R.api("GET", "/api/campaigns/" + id + "/recipients?state=failed&limit=50");
    if (!answer.ok) return;
    const data = answer.data;
    $("failures-table").tBodies[0].replaceChildren(
      ...data.items.map((item) => {
        const row = document.createElement("tr");
        row.dataset.code = item.last_error_code || "";
        for (const text of [item.phone ?? "(deleted contact)", item.last_error_code || "—", item.last_error || ""]) {
          const cell = document.createElement("td");
          cell.textContent = text;
          row.append(cell);
        }
        return row;
      }),
    );
    $("failures-count").textContent =
      failed + (data.items.length < failed ? " (first " + data.items.length + " shown)" : "");
  }

  // Sends per minute ----------------------------------------------------------------------
  async function refreshTimeline() {
    timelineAt = Date.now();
    const answer = await R.api("GET", "/api/campaigns/" + id + "/timeline");
    if (!answer.ok) return;
    const buckets = answer.data.buckets;
    const clock = (bucket) => {
      const time = R.parseTime(bucket.start);
      return time ? time.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : "";
    };
    const max = Math.max(1, ...buckets.map((b) => b.message_1 + b.message_2));
    $("timeline").replaceChildren(
      ...buckets.map((bucket) => {
        const column = document.createElement("div");
        column.className = "timeline-col";
        column.title = clock(bucket) + " — " + bucket.message_1 + " Message 1, " + bucket.message_2 + " Message 2";
        for (const [kind, value] of [["m1", bucket.message_1], ["m2", bucket.message_2]]) {
          const part = document.createElement("span");
          part.className = kind;
          part.style.height = (100 * value) / max + "%";
          column.append(part);
        }
        return column;
      }),
    );
    $("timeline-empty").hidden = buckets.length > 0;
    $("timeline-from").textContent = buckets.length ? clock(buckets[0]) : "";
    $("timeline-to").textContent = buckets.length > 1 ? clock(buckets[buckets.length - 1]) : "";
    $("timeline-peak").textContent = buckets.length ? "peak " + max + " / min" : "";
  }

  // Actions -------------------------------------------------------------------------------
  const QUESTIONS = {
    launch: "Launch this campaign now? Message 1 goes to every reachable contact.",
    pause: "Pause sending? Replies still get their Message 2 once you resume.",
    resume: "Resume sending?",
    "retry-failed": "Send Message 1 again to every failed contact?",
    "retry-limited": "Send Message 1 again to the contacts Meta held back (its per-user limit on marketing messages)?",
    cancel: "Cancel this campaign? Nothing more will be sent; this cannot be undone.",
    delete: "Delete this campaign and its history? This cannot be undone.",
  };

  async function act(action, button) {
    if (!confirm(QUESTIONS[action])) return;
    R.showAlert($("action-error"), "");
    button.disabled = true;
    const answer =
      action === "delete"
        ? await R.api("DELETE", "/api/campaigns/" + id)
        : await R.api("POST", "/api/campaigns/" + id + "/" + action);
    button.disabled = false;
    if (!answer.ok) {
      const detail = answer.data && answer.data.detail;
      // A launch refused for several texts answers a list of {field, msg}: show each sentence.
      const text = Array.isArray(detail) ? detail.map((d) => d.msg || JSON.stringify(d)).join(" ") : detail;
      R.showAlert($("action-error"), typeof text === "string" ? text : JSON.stringify(text));
      return;
    }
    if (action === "delete") {
      location.assign("/");
      return;
    }
    setStatus(answer.data.status);
    const stats = await R.api("GET", "/api/campaigns/" + id + "/stats");
    if (stats.ok) render(stats.data);
    refreshBlocking();
    refreshTimeline();
    window.relanceResults.reload();
    follow();
  }

  for (const button of document.querySelectorAll("#actions [data-action]")) {
    button.addEventListener("click", () => act(button.dataset.action, button));
  }

  showButtons();
  refreshFailures();
  refreshBlocking();
  refreshTimeline();
  follow();
})();
