// The job page (/jobs/<jobId>): one job, its attempts and timeline, and its log lines live.
// Plain JavaScript, no build step. Signs in as the dashboard does: the tab's token, a one-time
// sign-in link (#login=), or Identity-Aware Proxy's own header.
(() => {
  "use strict";

  const { $, el, api, TERMINAL, time, duration } = window.jobtrail;
  const REFRESH_MS = 3000;
  const MAX_LOG_LINES = 2000;
  const jobId = decodeURIComponent(location.pathname.replace(/^\/jobs\//, ""));
  const state = { logs: null, timer: null, finished: false };

  const pretty = (value) => JSON.stringify(value, null, 2);

  // ---- rendering ------------------------------------------------------------------------------
  function render(overview) {
    const job = overview.job;
    document.title = `jobtrail · ${job.jobId}`;
    $("j-id").textContent = job.jobId;
    $("j-badge").textContent = job.status;
    $("j-badge").dataset.status = job.status;
    $("j-stage").textContent = `${job.stage} · attempt ${job.attempt}`;
    const situation = overview.situation;
    $("j-situation").dataset.kind = situation.kind;
    $("j-situation").textContent = `${situation.kind}: ${situation.detail}` +
      (situation.nextDeliveryAfter ? ` · next delivery after ${time(situation.nextDeliveryAfter)}` : "");

    const links = [];
    if (job.links.trace) links.push(el("a", { href: job.links.trace, target: "_blank", rel: "noopener noreferrer", id: "link-trace", text: "Cloud Trace" }));
    links.push(el("a", { href: job.links.logs, target: "_blank", rel: "noopener noreferrer", id: "link-logs", text: "Cloud Logging" }));
    $("j-links").replaceChildren(...links.flatMap((a, i) => (i ? [" · ", a] : [a])));

    const facts = [
      ["pipeline", job.pipeline], ["user", job.userId], ["trace", job.traceId],
      ["created", time(job.createdAt)], ["updated", time(job.updatedAt)],
      ["finished", time(job.finishedAt)], ["progress", job.progressText],
    ];
    $("j-facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v || "–" })]));

    // data-label: at phone width each row becomes a small card of labelled values.
    const cell = (label, text, extra = {}) => el("td", { ...extra, dataset: { label, ...(extra.dataset || {}) }, text });
    const rows = overview.executions.map((e) => el("tr", { dataset: { executionId: e.execution_id } },
      cell("attempt", String(e.attempts)),
      cell("status", e.status, { dataset: { status: e.status } }),
      cell("started", time(e.started_at)),
      cell("ended", time(e.finished_at)),
      cell("duration", duration(e.action_duration_ms)),
      cell("error", e.last_error || "–", { class: "wrap" }),
      cell("retryable", e.retryable == null ? "–" : e.retryable ? "yes" : "no"),
      cell("to DLQ", e.queued_to_dlq ? "yes" : "no")));
    $("attempts").tBodies[0].replaceChildren(...rows);
    $("attempts-empty").hidden = rows.length > 0;

    const stages = overview.timeline.stages;
    const events = overview.timeline.events;
    $("timeline").tBodies[0].replaceChildren(...stages.map((s, i) => el("tr", { class: "stage-row" },
      cell("stage", s.stage), cell("attempt", String(s.attempt)),
      cell("entered", time(s.enteredAt)), cell("time in stage", s.leftAt ? duration(s.durationMs) : "now"),
      cell("by", (events[i] && events[i].actor) || ""))));

    const items = Object.entries(job.cost.items || {});
    $("cost").tBodies[0].replaceChildren(
      ...items.map(([k, v]) => el("tr", {}, el("th", { text: k }), el("td", { text: v.toFixed(6) }))),
      el("tr", { class: "total" }, el("th", { text: "total" }), el("td", { text: job.cost.total.toFixed(6) })));

    $("j-input").textContent = pretty(job.input);
    $("j-result").textContent = pretty(job.result);
    $("j-error-box").hidden = !job.error;
    if (job.error) $("j-error").textContent = pretty(job.error);
  }

  // ---- log lines, live ------------------------------------------------------------------------
  async function followLogs() {
    if (state.logs) return;
    $("logs-state").dataset.state = "connecting";
    let ticket;
    try {
      ticket = await api("/api/stream/tickets", { method: "POST" });
    } catch (error) {
      $("logs-note").textContent = `Log lines are not available: ${error.message}`;
      return;
    }
    const source = new EventSource(`/api/jobs/${encodeURIComponent(jobId)}/logs/stream?ticket=${encodeURIComponent(ticket.ticket)}`);
    state.logs = source;
    source.addEventListener("hello", () => { $("logs-state").dataset.state = "open"; });
    source.addEventListener("log", (event) => appendLine(JSON.parse(event.data)));
    source.addEventListener("end", () => {
      source.close();
      state.logs = null;
      $("logs-state").dataset.state = "ended";
    });
    source.onerror = () => {
      // A ticket opens one stream only: reconnect with a new one unless the stream ended.
      source.close();
      state.logs = null;
      if (!state.finished) setTimeout(followLogs, 2000);
      else $("logs-state").dataset.state = "ended";
    };
  }

  function appendLine(line) {
    const list = $("logs");
    const item = el("li", { dataset: { severity: line.severity } },
      el("time", { text: line.at ? new Date(line.at).toLocaleTimeString() : "" }),
      el("span", { class: "sev", text: line.severity }),
      el("span", { class: "src", text: line.source }),
      el("span", { class: "msg", text: line.message }));
    list.append(item);
    while (list.childElementCount > MAX_LOG_LINES) list.firstElementChild.remove();
    $("logs-note").textContent = `${list.childElementCount} line(s)`;
  }

  // ---- loading --------------------------------------------------------------------------------
  async function load() {
    let overview;
    try {
      overview = await api(`/api/jobs/${encodeURIComponent(jobId)}/overview`);
    } catch (error) {
      if (error.status === 401) return showLogin("Sign in to see this job.");
      $("job").hidden = false;
      $("j-id").textContent = jobId;
      $("j-message").textContent = error.status === 404 ? `No job ${jobId}.` : `Could not load the job: ${error.message}`;
      for (const card of document.querySelectorAll(".card")) card.hidden = true;
      return;
    }
    $("login").hidden = true;
    $("job").hidden = false;
    render(overview);
    state.finished = TERMINAL.has(overview.job.status);
    if (overview.logsLive) followLogs();
    else $("logs-note").textContent = "This deployment does not read log lines here; use the Cloud Logging link.";
    if (!state.timer) state.timer = setInterval(refresh, REFRESH_MS);
  }

  async function refresh() {
    try {
      const overview = await api(`/api/jobs/${encodeURIComponent(jobId)}/overview`);
      render(overview);
      state.finished = TERMINAL.has(overview.job.status);
      if (state.finished && !state.logs) clearInterval(state.timer);
    } catch (error) {
      $("j-message").textContent = `Could not refresh: ${error.message}`;
    }
  }

  const showLogin = (message) => window.jobtrail.showLogin("job", message);

  document.addEventListener("DOMContentLoaded", () => window.jobtrail.signInAndStart("job", load));
})();
