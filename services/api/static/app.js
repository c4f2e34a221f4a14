// jobtrail mission control: the API's own page. No framework, no build step.
//
// Data flow: the page opens GET /api/stream first and, once the stream says hello, fetches the
// first rows (GET /api/jobs), the header (GET /api/summary) and, for admins, the queues. From then
// on every job change arrives as an SSE "job" event and is applied in place; a "reset" event (the
// server could not replay what this page missed) makes it refetch. Everything untrusted goes into
// the DOM through textContent, never innerHTML.
"use strict";

(() => {
  const { $, el, api, ApiError, authHeaders, TERMINAL, duration, session, useToken } = window.jobtrail;
  const PHONE_WIDTH = "(max-width: 700px)"; // as app.css's @media
  const SUMMARY_EVERY_MS = 15000;
  const CHART_MINUTES = 60;
  const LIST_LIMIT = 200;
  const CHART_PAGES = 5;
  const ACTIVE = new Set(["queued", "running"]);
  const RETRYABLE = new Set(["failed", "timed_out"]);

  const state = {
    signedIn: false,
    principal: null, // {subject, role} as the stream's hello reports it
    staleAfterSeconds: 60,
    jobs: new Map(), // jobId -> job view (camelCase, as GET /api/jobs returns)
    rows: new Map(), // jobId -> <tr>
    sort: { key: "createdAt", dir: -1 },
    selectedId: null,
    timeline: null,
    source: null,
    lastEventId: null,
    started: false,
    loading: false,
    pending: [], // stream events that arrived while the list was loading
    // createdAt of the oldest loaded row when the list has more pages: an unknown job older than
    // that is outside the loaded window, so a change to it must not grow the table past the page.
    windowFloor: null,
    finished: new Map(), // jobId:attempt -> {at, ok}: the chart's data
    timers: [],
  };

  // ---- formatting ---------------------------------------------------------------------------
  const ms = (iso) => (iso ? Date.parse(iso) : NaN);
  function ago(iso) {
    const t = ms(iso);
    if (Number.isNaN(t)) return "–";
    const s = Math.max(0, Math.round((Date.now() - t) / 1000));
    if (s < 60) return `${s}s ago`;
    if (s < 3600) return `${Math.floor(s / 60)}m ago`;
    if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
    return new Date(t).toLocaleDateString();
  }
  // Stale means stuck: something expected by stuckAt (a poll, the end of a step, a redelivery) has not
  // happened. A job waiting its turn in a queue, or on Suno within its schedule, has no stuckAt due.
  const isStale = (job) => ACTIVE.has(job.status) && Boolean(job.stuckAt) && Date.now() > ms(job.stuckAt);
  function liveness(job) {
    if (!ACTIVE.has(job.status)) return "finished";
    if (isStale(job)) return "stuck";
    return job.liveness === "stuck" ? "running" : job.liveness || "running";
  }

  // ---- sign in / out ------------------------------------------------------------------------
  const showLogin = (message = "") => window.jobtrail.showLogin("app", message);

  async function signIn(token) {
    session.token = token;
    try {
      await api("/api/auth/me"); // proves the token before anything is shown
    } catch (error) {
      session.token = null;
      showLogin(error instanceof ApiError && error.status === 401
        ? "The token was refused (expired or invalid)."
        : `Could not reach the API: ${error.message}`);
      return;
    }
    useToken(token);
    start();
  }

  // Behind Identity-Aware Proxy every request already carries who signed in: no token needed.
  async function signInThroughProxy() {
    try {
      await api("/api/auth/me");
    } catch (error) {
      return false;
    }
    start();
    return true;
  }

  function signOut(message = "") {
    useToken(null);
    if (state.source) state.source.close();
    for (const timer of state.timers) clearInterval(timer);
    Object.assign(state, {
      signedIn: false, principal: null, source: null, lastEventId: null, started: false, selectedId: null,
      timeline: null, loading: false, pending: [], timers: [],
    });
    state.jobs.clear();
    state.rows.clear();
    state.finished.clear();
    $("jobs").tBodies[0].replaceChildren();
    $("queue-list").replaceChildren();
    $("detail").hidden = true;
    showLogin(message);
  }

  // ---- the stream ---------------------------------------------------------------------------
  function streamUrl(ticket, resumeFrom) {
    const params = new URLSearchParams();
    for (const [name, value] of Object.entries(filterParams())) params.set(name, value);
    // EventSource cannot send headers: a one-time ticket, never the token, goes in the URL.
    params.set("ticket", ticket);
    if (resumeFrom) params.set("lastEventId", resumeFrom);
    return `/api/stream?${params}`;
  }

  function setLive(stateName, text = stateName) {
    $("live").dataset.state = stateName;
    $("live").textContent = text;
  }

  let streamGeneration = 0;

  // Opens the stream with a fresh ticket. Every (re)connection needs one, since a ticket opens one
  // stream only: EventSource's own retry would reuse a spent ticket, so the page reconnects itself,
  // passing the last event id it saw so the server replays what was missed.
  async function connectStream(resumeFrom = null) {
    const generation = ++streamGeneration;
    if (state.source) state.source.close();
    state.source = null;
    setLive("connecting");
    let ticket;
    try {
      ticket = (await api("/api/stream/tickets", { method: "POST" })).ticket;
    } catch (error) {
      // 401 has signed out already; anything else (the API restarting, say): try again shortly.
      if (state.signedIn && generation === streamGeneration) {
        setLive("closed", "offline");
        setTimeout(() => generation === streamGeneration && connectStream(state.lastEventId), 5000);
      }
      return;
    }
    if (!state.signedIn || generation !== streamGeneration) return; // signed out or superseded meanwhile
    const source = new EventSource(streamUrl(ticket, resumeFrom));
    state.source = source;
    source.addEventListener("open", () => setLive("open", "live"));
    source.addEventListener("hello", (event) => onHello(JSON.parse(event.data)));
    source.addEventListener("job", (event) => {
      state.lastEventId = event.lastEventId;
      onJob(JSON.parse(event.data));
    });
    source.addEventListener("reset", (event) => {
      state.lastEventId = event.lastEventId;
      refetchAll();
    });
    source.addEventListener("error", () => {
      if (source !== state.source) return;
      source.close();
      setLive("reconnecting");
      setTimeout(() => source === state.source && state.signedIn && connectStream(state.lastEventId), 1000);
    });
  }

  function onHello(hello) {
    state.principal = { subject: hello.subject, role: hello.role };
    state.staleAfterSeconds = hello.staleAfterSeconds;
    $("who-name").textContent = hello.subject;
    $("who-role").textContent = hello.role;
    fillOptions($("f-pipeline"), hello.pipelines);
    fillOptions($("f-status"), hello.statuses);
    $("queues").hidden = hello.role !== "admin";
    $("f-user").hidden = hello.role !== "admin"; // users see their own jobs only
    if (!state.started) {
      state.started = true;
      refetchAll();
    }
  }

  function fillOptions(select, values) {
    const known = new Set([...select.options].map((o) => o.value));
    for (const value of values) if (!known.has(value)) select.append(el("option", { value, text: value }));
  }

  function refetchAll() {
    loadJobs();
    loadSummary();
    loadChart();
    if (state.principal && state.principal.role === "admin") loadQueues();
  }

  function onJob(job) {
    if (state.loading) state.pending.push(job);
    if (!outsideWindow(job)) upsert(job, true);
    recordFinished(job);
    renderChart();
    scheduleSummary();
  }

  // ---- jobs table ---------------------------------------------------------------------------
  function filterParams() {
    const params = {};
    if ($("f-status").value) params.status = $("f-status").value;
    if ($("f-pipeline").value) params.pipeline = $("f-pipeline").value;
    if ($("f-account").value.trim()) params.accountId = $("f-account").value.trim();
    if ($("f-user").value.trim()) params.userId = $("f-user").value.trim();
    return params;
  }

  function matches(job) {
    const f = filterParams();
    if (f.status && job.status !== f.status) return false;
    if (f.pipeline && job.pipeline !== f.pipeline) return false;
    if (f.accountId && job.accountId !== f.accountId) return false;
    if (f.userId && job.userId !== f.userId) return false;
    const search = $("f-search").value.trim().toLowerCase();
    if (search && !job.jobId.toLowerCase().includes(search) && !job.traceId.toLowerCase().includes(search)) {
      return false;
    }
    return true;
  }

  async function loadJobs() {
    state.loading = true;
    state.pending = [];
    const params = new URLSearchParams({ limit: String(LIST_LIMIT), sort: "-createdAt", ...filterParams() });
    try {
      const page = await api(`/api/jobs?${params}`);
      state.jobs.clear();
      for (const job of page.jobs) state.jobs.set(job.jobId, job);
      const oldest = page.jobs[page.jobs.length - 1];
      state.windowFloor = page.nextCursor && oldest ? ms(oldest.createdAt) : null;
      for (const job of state.pending) if (!outsideWindow(job)) upsert(job, false); // newer than the page, if they are
      $("jobs-message").textContent = "";
    } catch (error) {
      $("jobs-message").textContent = `Could not load jobs: ${error.message}`;
    } finally {
      state.loading = false;
      state.pending = [];
      renderTable();
    }
    // A shared view (an alert's "Jobs of trace" link) may search for a job older than the rows loaded.
    const term = $("f-search").value.trim();
    if (term && ![...state.jobs.values()].some(matches)) lookUp(term);
  }

  function outsideWindow(job) {
    return !state.jobs.has(job.jobId) && state.windowFloor !== null && ms(job.createdAt) < state.windowFloor;
  }

  function upsert(job, live) {
    const known = state.jobs.get(job.jobId);
    if (known && ms(known.updatedAt) > ms(job.updatedAt)) return; // a late, older version
    const isNew = !known;
    state.jobs.set(job.jobId, job);
    if (!live) return;
    const row = renderRow(job);
    if (isNew) {
      row.classList.remove("fresh");
      void row.offsetWidth; // restart the highlight animation
      row.classList.add("fresh");
    }
    placeRows();
    if (job.jobId === state.selectedId) refreshDetail(job);
  }

  const COLUMNS = ["jobId", "pipeline", "status", "stage", "accountId", "userId", "attempt", "createdAt", "updatedAt"];

  function renderRow(job) {
    let row = state.rows.get(job.jobId);
    if (!row) {
      row = el("tr", { "data-job-id": job.jobId });
      for (const col of COLUMNS) row.append(el("td", { "data-col": col }));
      row.addEventListener("click", () => selectJob(job.jobId));
      state.rows.set(job.jobId, row);
    }
    row.dataset.status = job.status;
    const cells = Object.fromEntries([...row.cells].map((c) => [c.dataset.col, c]));
    setText(cells.jobId, job.jobId);
    setText(cells.pipeline, job.pipeline);
    const pill = cells.status.firstElementChild || cells.status.appendChild(el("span"));
    if (pill.textContent !== job.status) {
      pill.textContent = job.status;
      pill.className = `pill ${job.status}`;
    }
    setText(cells.stage, job.stage);
    cells.stage.title = job.progressText || "";
    cells.stage.classList.toggle("stale", isStale(job));
    cells.stage.dataset.liveness = liveness(job);
    setText(cells.accountId, job.accountId);
    setText(cells.userId, job.userId);
    setText(cells.attempt, String(job.attempt));
    setText(cells.createdAt, ago(job.createdAt));
    cells.createdAt.title = job.createdAt;
    setText(cells.updatedAt, ago(job.updatedAt));
    cells.updatedAt.title = job.updatedAt;
    row.classList.toggle("selected", job.jobId === state.selectedId);
    return row;
  }

  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text; // in place: no churn for unchanged cells
  }

  function compare(a, b) {
    const { key, dir } = state.sort;
    let x = a[key];
    let y = b[key];
    if (key === "createdAt" || key === "updatedAt") {
      x = ms(x);
      y = ms(y);
    }
    if (x === y) return ms(b.createdAt) - ms(a.createdAt);
    return (x > y ? 1 : -1) * dir;
  }

  function placeRows() {
    const body = $("jobs").tBodies[0];
    const visible = [...state.jobs.values()].filter(matches).sort(compare);
    const wanted = visible.map((job) => state.rows.get(job.jobId) || renderRow(job));
    // Move only what is out of place, so rows (and their highlight) survive a re-sort.
    wanted.forEach((row, i) => {
      if (body.children[i] !== row) body.insertBefore(row, body.children[i] || null);
    });
    while (body.children.length > wanted.length) body.lastElementChild.remove();
    $("jobs-count").textContent = `${visible.length} shown`;
  }

  function renderTable() {
    for (const job of state.jobs.values()) renderRow(job);
    for (const id of [...state.rows.keys()]) if (!state.jobs.has(id)) state.rows.delete(id);
    placeRows();
    for (const th of $("jobs").tHead.rows[0].cells) {
      th.setAttribute("aria-sort", th.dataset.key === state.sort.key ? (state.sort.dir > 0 ? "ascending" : "descending") : "none");
    }
  }

  async function lookUp(term) {
    // Not among the loaded rows: ask the API (a job id, else a traceId).
    try {
      if (/^job_/.test(term)) {
        const job = await api(`/api/jobs/${encodeURIComponent(term)}`);
        upsert(job, true);
        selectJob(job.jobId);
      } else {
        const page = await api(`/api/jobs?${new URLSearchParams({ traceId: term, limit: "50" })}`);
        for (const job of page.jobs) upsert(job, true);
        $("jobs-message").textContent = page.jobs.length ? "" : `No job with traceId ${term}.`;
      }
    } catch (error) {
      $("jobs-message").textContent = error.status === 404 ? `No job ${term}.` : `Lookup failed: ${error.message}`;
    }
  }

  // ---- header -------------------------------------------------------------------------------
  let summaryTimer = null;
  function scheduleSummary() {
    if (summaryTimer) return;
    summaryTimer = setTimeout(() => {
      summaryTimer = null;
      loadSummary();
    }, 2000);
  }

  async function loadSummary() {
    try {
      const s = await api("/api/summary");
      $("m-queued").textContent = s.queued;
      $("m-active").textContent = s.active;
      $("m-failure").textContent = s.failureRate24h == null ? "–" : `${(s.failureRate24h * 100).toFixed(1)}%`;
      $("m-duration").textContent = duration(s.meanDurationMs24h);
      $("m-dlq").textContent = s.dlqSize;
      $("m-dlq").classList.toggle("alarm", s.dlqSize > 0);
      $("m-stale").textContent = s.staleJobs;
    } catch (error) {
      /* the header keeps its last numbers; the stream badge tells about connectivity */
    }
  }

  async function loadQueues() {
    try {
      const { queues } = await api("/api/admin/queues");
      $("queue-list").replaceChildren(
        ...queues.map((q) => {
          const action = q.paused ? "resume" : "pause";
          const button = el("button", { type: "button", "data-queue": q.name, "data-action": action, text: q.paused ? "Resume" : "Pause" });
          button.addEventListener("click", () => changeQueue(q.name, action, button));
          const item = el("li", { "data-queue": q.name, class: q.paused ? "paused" : "" },
            el("span", { text: q.name }),
            el("span", { class: "state", text: q.paused ? `paused by ${q.changedBy || "?"}` : "flowing" }),
            button);
          return item;
        }),
      );
    } catch (error) {
      $("queue-message").textContent = `Could not load queues: ${error.message}`;
    }
  }

  async function changeQueue(name, action, button) {
    button.disabled = true;
    try {
      await api(`/api/admin/queues/${encodeURIComponent(name)}/${action}`, { method: "POST" });
      $("queue-message").textContent = `${name} ${action === "pause" ? "paused" : "resumed"}.`;
    } catch (error) {
      $("queue-message").textContent = `Could not ${action} ${name}: ${error.message}`;
    }
    loadQueues();
  }

  // ---- detail panel -------------------------------------------------------------------------
  async function selectJob(jobId) {
    state.selectedId = jobId;
    state.timeline = null;
    for (const [id, row] of state.rows) row.classList.toggle("selected", id === jobId);
    $("detail").hidden = false;
    // At phone width the panel sits below the table, not over it: bring it into view.
    if (window.matchMedia(PHONE_WIDTH).matches) $("detail").scrollIntoView({ block: "start" });
    $("d-action-message").textContent = "";
    const known = state.jobs.get(jobId);
    if (known) refreshDetail(known);
    try {
      const job = await api(`/api/jobs/${encodeURIComponent(jobId)}`);
      if (state.selectedId !== jobId) return;
      upsert(job, true);
      refreshDetail(state.jobs.get(jobId), true);
    } catch (error) {
      $("d-action-message").textContent = `Could not load the job: ${error.message}`;
    }
  }

  function refreshDetail(job, forceTimeline = false) {
    const shown = $("detail").dataset;
    const moved = shown.stage !== job.stage || shown.attempt !== String(job.attempt);
    shown.jobId = job.jobId;
    shown.stage = job.stage;
    shown.attempt = String(job.attempt);
    $("d-title").textContent = `${job.jobId} · ${job.pipeline}`;
    const status = $("d-status");
    status.textContent = job.status + (job.cancelRequested && ACTIVE.has(job.status) ? " (cancel requested)" : "");
    status.className = `status-big pill ${job.status}`;
    $("d-stage").textContent = `Stage ${job.stage}: ${job.progressText || ""} · attempt ${job.attempt}`
      + (ACTIVE.has(job.status) ? ` · ${liveness(job)}` : "");
    renderIds(job);
    $("btn-retry").hidden = !RETRYABLE.has(job.status);
    $("btn-cancel").hidden = !ACTIVE.has(job.status) || job.cancelRequested;
    renderOutcome(job);
    renderLinks(job);
    tickDetail();
    if (moved || forceTimeline || !state.timeline) loadTimeline(job.jobId);
  }

  function renderIds(job) {
    const ids = [["jobId", job.jobId], ["traceId", job.traceId], ["sunoTaskId", job.sunoTaskId]];
    $("d-ids").replaceChildren(
      ...ids.filter(([, value]) => value).flatMap(([name, value]) => {
        const button = el("button", { type: "button", class: "copy", "data-copy": name, text: "copy" });
        button.addEventListener("click", () => copy(value, button));
        return [el("dt", { text: name }), el("dd", { text: value }), el("dd", {}, button)];
      }),
    );
  }

  async function copy(text, button) {
    try {
      await navigator.clipboard.writeText(text);
    } catch (error) {
      // No clipboard permission (or an insecure origin): the old way still works on a selection.
      const area = el("textarea");
      area.value = text;
      document.body.append(area);
      area.select();
      document.execCommand("copy");
      area.remove();
    }
    button.textContent = "copied";
    setTimeout(() => (button.textContent = "copy"), 1200);
  }

  function renderOutcome(job) {
    const box = $("d-error");
    if (job.error) {
      box.hidden = false;
      box.replaceChildren(
        el("strong", { text: job.error.code }),
        el("p", { text: job.error.message }),
        el("p", { class: "muted", text: `stage ${job.error.stage || "?"} · ${job.error.retryable ? "retryable" : "not retryable"}` }),
      );
    } else {
      box.hidden = true;
    }
    const result = $("d-result");
    const hasResult = job.result && Object.keys(job.result).length > 0;
    result.hidden = !hasResult;
    if (hasResult) result.querySelector("pre").textContent = JSON.stringify(job.result, null, 2);
  }

  function renderLinks(job) {
    const links = job.links || {};
    const parts = [el("a", { href: `/jobs/${encodeURIComponent(job.jobId)}`, id: "link-job-page", text: "Job page" })];
    parts.push(links.trace
      ? el("a", { href: links.trace, target: "_blank", rel: "noopener noreferrer", id: "link-trace", text: "Trace" })
      : el("span", { class: "off", text: "No trace recorded" }));
    if (links.logs) parts.push(el("a", { href: links.logs, target: "_blank", rel: "noopener noreferrer", id: "link-logs", text: "Logs" }));
    $("d-links").replaceChildren(...parts);
  }

  async function loadTimeline(jobId) {
    try {
      const timeline = await api(`/api/jobs/${encodeURIComponent(jobId)}/events`);
      if (state.selectedId !== jobId) return;
      state.timeline = timeline;
      renderTimeline();
    } catch (error) {
      $("d-timeline").replaceChildren(el("p", { text: `Could not load the timeline: ${error.message}` }));
    }
  }

  function renderTimeline() {
    const timeline = state.timeline;
    const job = state.jobs.get(state.selectedId);
    if (!timeline || !job || !timeline.stages.length) {
      $("d-timeline").replaceChildren();
      return;
    }
    const start = ms(timeline.stages[0].enteredAt);
    const lastStage = timeline.stages[timeline.stages.length - 1];
    const open = ACTIVE.has(job.status);
    const end = open ? Date.now() : Math.max(ms(lastStage.enteredAt), ms(job.finishedAt) || 0);
    const span = Math.max(end - start, 1);
    const rows = [];
    let attempt = timeline.stages[0].attempt;
    for (const stage of timeline.stages) {
      if (stage.attempt !== attempt) {
        attempt = stage.attempt;
        rows.push(el("div", { class: "tl-attempt", text: `attempt ${attempt}` }));
      }
      const entered = ms(stage.enteredAt);
      const isLast = stage === lastStage;
      const isOpen = isLast && open;
      const took = stage.durationMs != null ? stage.durationMs : isOpen ? Date.now() - entered : null;
      const bar = el("div", { class: `tl-bar ${isOpen ? "open" : ""} ${stage.stage}` });
      bar.style.left = `${((entered - start) / span) * 100}%`;
      bar.style.width = `${(((took || 0) / span) * 100).toFixed(2)}%`;
      rows.push(el("div", { class: "tl-row", "data-stage": stage.stage },
        el("span", { text: stage.stage }),
        el("div", { class: "tl-track" }, bar),
        el("span", { class: "tl-duration", text: isLast && !open ? "" : duration(took) })));
    }
    $("d-timeline").replaceChildren(...rows);
  }

  function tickDetail() {
    const job = state.selectedId && state.jobs.get(state.selectedId);
    if (!job || $("detail").hidden) return;
    const begin = ms(job.createdAt);
    const end = TERMINAL.has(job.status) ? ms(job.finishedAt) || ms(job.updatedAt) : Date.now();
    $("d-elapsed").textContent = `${TERMINAL.has(job.status) ? "Took" : "Elapsed"} ${duration(end - begin)}`
      + ` · last heartbeat ${ago(job.heartbeatAt)}`;
    const stale = $("d-stale");
    stale.hidden = !isStale(job);
    if (!stale.hidden) {
      const late = Math.round((Date.now() - ms(job.stuckAt)) / 1000);
      stale.textContent = `Stuck: what was expected (a poll, the end of a step, a redelivery) is ${late} s `
        + "overdue. The sweeper times the job out if it stays silent.";
    }
    if (ACTIVE.has(job.status) && state.timeline) renderTimeline();
  }

  async function act(kind) {
    const jobId = state.selectedId;
    const button = kind === "retry" ? $("btn-retry") : $("btn-cancel");
    button.disabled = true;
    $("d-action-message").textContent = kind === "retry" ? "Retrying…" : "Cancelling…";
    try {
      const job = kind === "retry"
        ? await api(`/api/jobs/${encodeURIComponent(jobId)}/retry`, { method: "POST" })
        : await api(`/api/jobs/${encodeURIComponent(jobId)}`, { method: "DELETE" });
      $("d-action-message").textContent = kind === "retry"
        ? `Attempt ${job.attempt} queued.`
        : job.status === "cancelled" ? "Cancelled." : "Cancel requested: the worker stops at the next stage.";
      upsert(job, true);
    } catch (error) {
      $("d-action-message").textContent = `${kind === "retry" ? "Retry" : "Cancel"} refused: ${error.message}`;
    } finally {
      button.disabled = false;
    }
  }

  // ---- chart: succeeded and failed per minute, last hour ------------------------------------
  function recordFinished(job) {
    if (!TERMINAL.has(job.status) || job.status === "cancelled" || !job.finishedAt) return;
    state.finished.set(`${job.jobId}:${job.attempt}`, { at: ms(job.finishedAt), ok: job.status === "succeeded" });
  }

  async function loadChart() {
    // Recently updated jobs, newest first, until the page reaches past the hour.
    const since = Date.now() - CHART_MINUTES * 60000;
    let cursor = null;
    try {
      for (let page = 0; page < CHART_PAGES; page += 1) {
        const params = new URLSearchParams({ sort: "-updatedAt", limit: String(LIST_LIMIT) });
        if (cursor) params.set("cursor", cursor);
        const result = await api(`/api/jobs?${params}`);
        for (const job of result.jobs) recordFinished(job);
        const last = result.jobs[result.jobs.length - 1];
        cursor = result.nextCursor;
        if (!cursor || !last || ms(last.updatedAt) < since) break;
      }
    } catch (error) {
      /* the chart fills from the stream instead */
    }
    renderChart();
  }

  function renderChart() {
    const now = Date.now();
    const ok = new Array(CHART_MINUTES).fill(0);
    const bad = new Array(CHART_MINUTES).fill(0);
    for (const [key, entry] of state.finished) {
      const minutesAgo = Math.floor((now - entry.at) / 60000);
      if (minutesAgo >= CHART_MINUTES + 5) state.finished.delete(key);
      if (minutesAgo < 0 || minutesAgo >= CHART_MINUTES) continue;
      (entry.ok ? ok : bad)[CHART_MINUTES - 1 - minutesAgo] += 1;
    }
    const top = Math.max(1, ...ok.map((v, i) => v + bad[i]));
    const svg = $("chart");
    const ns = "http://www.w3.org/2000/svg";
    const width = 600 / CHART_MINUTES;
    const shapes = [];
    const line = document.createElementNS(ns, "line");
    Object.entries({ x1: 0, x2: 600, y1: 119.5, y2: 119.5 }).forEach(([k, v]) => line.setAttribute(k, v));
    shapes.push(line);
    for (let i = 0; i < CHART_MINUTES; i += 1) {
      let y = 120;
      for (const [count, cls] of [[ok[i], "ok"], [bad[i], "bad"]]) {
        if (!count) continue;
        const h = (count / top) * 110;
        y -= h;
        const rect = document.createElementNS(ns, "rect");
        Object.entries({ x: i * width + 1, y, width: width - 2, height: h, class: cls }).forEach(([k, v]) => rect.setAttribute(k, v));
        const title = document.createElementNS(ns, "title");
        title.textContent = `${CHART_MINUTES - i} min ago: ${count} ${cls === "ok" ? "succeeded" : "failed"}`;
        rect.append(title);
        shapes.push(rect);
      }
    }
    svg.replaceChildren(...shapes);
    const done = ok.reduce((a, b) => a + b, 0);
    const failed = bad.reduce((a, b) => a + b, 0);
    $("chart-totals").textContent = `${done} succeeded · ${failed} failed · peak ${top}/min`;
  }

  // ---- the view in the URL ------------------------------------------------------------------
  // Filters, sort and search live in the query string: a view can be shared and reloaded as it
  // is, and back/forward step between views.
  const URL_FIELDS = { status: "f-status", pipeline: "f-pipeline", accountId: "f-account", userId: "f-user", q: "f-search" };
  const DEFAULT_SORT = "-createdAt";

  function viewFromUrl() {
    const params = new URLSearchParams(location.search);
    for (const [name, id] of Object.entries(URL_FIELDS)) {
      const value = params.get(name) || "";
      const input = $(id);
      // The stream's hello fills the lists later; a value from the URL must be choosable now.
      if (input.tagName === "SELECT" && value && ![...input.options].some((o) => o.value === value)) {
        input.append(el("option", { value, text: value }));
      }
      input.value = value;
    }
    const sort = params.get("sort") || DEFAULT_SORT;
    const key = sort.replace(/^-/, "");
    state.sort = COLUMNS.includes(key) ? { key, dir: sort.startsWith("-") ? -1 : 1 } : { key: "createdAt", dir: -1 };
  }

  function viewQuery() {
    const params = new URLSearchParams();
    for (const [name, id] of Object.entries(URL_FIELDS)) {
      const value = $(id).value.trim();
      if (value) params.set(name, value);
    }
    const sort = `${state.sort.dir < 0 ? "-" : ""}${state.sort.key}`;
    if (sort !== DEFAULT_SORT) params.set("sort", sort);
    return params;
  }

  const saveView = (replace = false) => window.jobtrail.saveViewInUrl(viewQuery(), replace);

  // The API sorts by creation or last change; a column sorted only on the page exports newest first.
  function apiSort() {
    const { key, dir } = state.sort;
    if (key === "createdAt") return dir < 0 ? "-createdAt" : "createdAt";
    return key === "updatedAt" && dir < 0 ? "-updatedAt" : DEFAULT_SORT;
  }

  // ---- bulk retry / cancel by filter ---------------------------------------------------------
  // Preview (how many, by status), confirm, then runs of BULK_PAGE jobs until none is left, the
  // bar moving after each. The API acts on each job once however many runs overlap (another
  // operator, the CLI); what another run took counts here as skipped.
  const BULK_PAGE = 10;
  const bulk = { preview: null, running: false };

  function bulkFilter() {
    const { status, pipeline, accountId, userId } = filterParams();
    return Object.fromEntries(Object.entries({ status, pipeline, accountId, userId }).filter(([, v]) => v));
  }

  function describeFilter(filter) {
    const parts = Object.entries(filter).filter(([, v]) => v != null).map(([k, v]) => `${k} ${v}`);
    return parts.length ? parts.join(", ") : "no filter";
  }

  async function previewBulk(action) {
    if (bulk.running) return;
    bulk.preview = null;
    const box = $("bulk");
    Object.assign(box.dataset, { state: "preview", action });
    box.hidden = false;
    $("bulk-confirm").hidden = true;
    $("bulk-progress").hidden = true;
    $("bulk-status").textContent = "";
    $("bulk-preview").textContent = "Counting…";
    try {
      const preview = await api("/api/bulk/preview", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ action, filter: bulkFilter() }),
      });
      bulk.preview = preview;
      const verb = action === "retry" ? "Retry" : "Cancel";
      const byStatus = Object.entries(preview.byStatus).map(([status, n]) => `${n} ${status}`).join(", ");
      $("bulk-preview").dataset.matched = String(preview.matched);
      $("bulk-preview").textContent = preview.matched
        ? `${verb} ${preview.matched} job(s) (${byStatus}) matching ${describeFilter(preview.filter)}?`
          + ($("f-search").value.trim() ? " The search box narrows the table only, not this action." : "")
        : `No job to ${action} matches ${describeFilter(preview.filter)}.`;
      $("bulk-confirm").textContent = `${verb} ${preview.matched}`;
      $("bulk-confirm").hidden = preview.matched === 0;
    } catch (error) {
      $("bulk-preview").textContent = `Preview refused: ${error.message}`;
    }
  }

  async function runBulk() {
    const preview = bulk.preview;
    if (!preview || bulk.running) return; // a second click while it runs starts nothing
    bulk.running = true;
    const box = $("bulk");
    box.dataset.state = "running";
    $("bulk-confirm").disabled = true;
    $("bulk-close").disabled = true;
    const bar = $("bulk-progress");
    Object.assign(bar, { hidden: false, max: Math.max(preview.matched, 1), value: 0 });
    const totals = { acted: 0, skipped: 0, failed: 0 };
    const body = { action: preview.action, filter: preview.filter, updatedBefore: preview.asOf, limit: BULK_PAGE };
    try {
      for (;;) {
        const result = await api("/api/bulk", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify(body),
        });
        totals.acted += result.acted;
        totals.skipped += result.skipped;
        totals.failed += result.failed;
        showBulkProgress(preview, totals);
        // Done when nothing matches any more, or a call found nothing left that it could take.
        if (result.remaining === 0 || result.acted + result.skipped === 0) break;
      }
      box.dataset.state = "done";
      bar.value = bar.max;
      $("bulk-status").textContent = `Done. ${$("bulk-status").textContent}`;
    } catch (error) {
      box.dataset.state = "error";
      $("bulk-status").textContent += ` Stopped: ${error.message}. Preview again to go on.`;
    } finally {
      bulk.running = false;
      bulk.preview = null;
      $("bulk-confirm").hidden = true;
      $("bulk-confirm").disabled = false;
      $("bulk-close").disabled = false;
    }
  }

  function showBulkProgress(preview, totals) {
    const done = totals.acted + totals.skipped + totals.failed;
    $("bulk-progress").value = Math.min(done, $("bulk-progress").max);
    Object.assign($("bulk").dataset, { acted: totals.acted, skipped: totals.skipped, failed: totals.failed });
    const verb = preview.action === "retry" ? "retried" : "cancelled";
    $("bulk-status").textContent = `${done} of ${preview.matched}: ${totals.acted} ${verb}, `
      + `${totals.skipped} skipped (moved, or taken by another run), ${totals.failed} failed.`;
  }

  // ---- CSV export of the current filter --------------------------------------------------------
  // Every matching job, not only the rows loaded: the API streams them from Firestore page by page.
  async function exportCsv() {
    const query = new URLSearchParams({ ...filterParams(), sort: apiSort() });
    const search = $("f-search").value.trim();
    if (search) query.set("search", search);
    const button = $("export-csv");
    button.disabled = true;
    $("jobs-message").textContent = "Exporting…";
    try {
      const response = await fetch(`/api/exports/jobs.csv?${query}`, {
        headers: authHeaders(),
      });
      if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
      const text = await response.text();
      const disposition = response.headers.get("Content-Disposition") || "";
      const name = (disposition.match(/filename="([^"]+)"/) || [])[1] || "jobs.csv";
      const url = URL.createObjectURL(new Blob([text], { type: "text/csv" }));
      const link = el("a", { href: url, download: name, hidden: "" });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
      const rows = text.split("\r\n").filter(Boolean).length - 1;
      $("jobs-message").textContent = `Exported ${rows} job(s) to ${name}.`;
    } catch (error) {
      $("jobs-message").textContent = `Export refused: ${error.message}`;
    } finally {
      button.disabled = false;
    }
  }

  // ---- wiring -------------------------------------------------------------------------------
  function start() {
    state.signedIn = true;
    $("login").hidden = true;
    $("app").hidden = false;
    connectStream();
    state.timers.push(setInterval(loadSummary, SUMMARY_EVERY_MS));
    state.timers.push(setInterval(tickDetail, 1000));
    state.timers.push(setInterval(() => { renderTable(); renderChart(); }, 10000)); // "ago" columns, chart window
  }

  function onFiltersChanged() {
    renderTable();
    if (!state.signedIn) return;
    state.started = false; // the next hello refetches with the new filters
    state.lastEventId = null;
    connectStream();
  }

  document.addEventListener("DOMContentLoaded", () => {
    window.jobtrail.onTokenSubmitted(signIn);
    // A token the API refuses mid-session (expired, say) signs the page out.
    session.onRefused = () => state.signedIn && signOut("The token was refused (expired or invalid). Sign in again.");
    $("logout").addEventListener("click", () => signOut());
    for (const id of ["f-status", "f-pipeline", "f-account", "f-user"]) {
      $(id).addEventListener("change", () => {
        saveView();
        onFiltersChanged();
      });
    }
    $("f-search").addEventListener("input", () => {
      renderTable();
      saveView(true); // each keystroke is not a step back
    });
    window.addEventListener("popstate", () => {
      viewFromUrl();
      onFiltersChanged();
    });
    $("bulk-retry").addEventListener("click", () => previewBulk("retry"));
    $("bulk-cancel").addEventListener("click", () => previewBulk("cancel"));
    $("bulk-confirm").addEventListener("click", runBulk);
    $("bulk-close").addEventListener("click", () => ($("bulk").hidden = true));
    $("export-csv").addEventListener("click", exportCsv);
    $("f-search").addEventListener("keydown", (event) => {
      if (event.key !== "Enter") return;
      event.preventDefault();
      const term = $("f-search").value.trim();
      if (term && ![...state.jobs.values()].some(matches)) lookUp(term);
    });
    $("filters").addEventListener("submit", (event) => event.preventDefault());
    for (const th of $("jobs").tHead.rows[0].cells) {
      th.addEventListener("click", () => {
        const key = th.dataset.key;
        state.sort = { key, dir: state.sort.key === key ? -state.sort.dir : key.endsWith("At") ? -1 : 1 };
        saveView();
        renderTable();
      });
    }
    $("d-close").addEventListener("click", () => {
      state.selectedId = null;
      $("detail").hidden = true;
      for (const row of state.rows.values()) row.classList.remove("selected");
    });
    $("btn-retry").addEventListener("click", () => act("retry"));
    $("btn-cancel").addEventListener("click", () => act("cancel"));

    viewFromUrl();
    const code = window.jobtrail.loginCodeInUrl();
    if (code) window.jobtrail.redeemLoginCode(code, "app").then((token) => token && signIn(token));
    else if (session.token) signIn(session.token);
    else signInThroughProxy().then((signedIn) => signedIn || showLogin());
  });
})();
