// The dead-letters page (/dead-letters): dead letters grouped by pipeline, error code and day;
// select some or all matching, preview, replay with progress; fix a job's input, then replay it.
// Plain JavaScript, no build step. Signs in as the job page does. The filter lives in the URL.
(() => {
  "use strict";

  const { $, el, api, time } = window.jobtrail;
  const BATCH = 50; // jobs per replay call: progress shows between calls
  const FACETS = ["pipeline", "cause", "day"];
  const state = { board: null, selected: new Set(), editing: null, checked: null };

  // ---- the filter, kept in the URL ---------------------------------------------------------------
  function filterFromUrl() {
    const params = new URLSearchParams(location.search);
    const filter = {};
    for (const facet of FACETS) if (params.get(facet)) filter[facet] = params.get(facet);
    return filter;
  }

  function setFilter(filter) {
    window.jobtrail.saveViewInUrl(filter);
    load();
  }

  // The API filters on since/until; the page's day facet is one UTC day.
  function apiFilter(filter) {
    const out = {};
    if (filter.pipeline) out.pipeline = filter.pipeline;
    if (filter.cause) out.cause = filter.cause;
    if (filter.day) {
      const start = new Date(`${filter.day}T00:00:00Z`);
      out.since = start.toISOString();
      out.until = new Date(start.getTime() + 86400000).toISOString();
    }
    return out;
  }

  // ---- rendering ---------------------------------------------------------------------------------
  function render(board) {
    const filter = filterFromUrl();
    $("dl-total").textContent = String(board.total);
    $("dl-summary").textContent = `${board.matched} of ${board.total} match` +
      (board.truncated ? " (more exist: counts cover the oldest; replay by filter takes them all)" : "");
    $("clear-filter").hidden = Object.keys(filter).length === 0;
    for (const facet of FACETS) {
      $(`g-${facet}`).replaceChildren(...board.groups[facet].map((group) => {
        const active = filter[facet] === group.value;
        const button = el("button", { type: "button", class: active ? "group active" : "group",
          dataset: { facet, value: group.value }, "aria-pressed": String(active) },
          el("span", { text: group.value }), el("span", { class: "count", text: String(group.count) }));
        button.addEventListener("click", () => {
          const next = { ...filterFromUrl() };
          if (active) delete next[facet];
          else next[facet] = group.value;
          setFilter(next);
        });
        return el("li", {}, button);
      }));
    }

    const listed = new Set(board.jobs.map((job) => job.jobId));
    for (const id of [...state.selected]) if (!listed.has(id)) state.selected.delete(id);
    const cell = (label, ...content) => el("td", { dataset: { label } }, ...content);
    $("letters").tBodies[0].replaceChildren(...board.jobs.map((job) => {
      const box = el("input", { type: "checkbox", class: "pick", "aria-label": `Select ${job.jobId}` });
      box.checked = state.selected.has(job.jobId);
      box.addEventListener("change", () => {
        if (box.checked) state.selected.add(job.jobId);
        else state.selected.delete(job.jobId);
        updateActions();
      });
      const edit = el("button", { type: "button", class: "edit", text: "Edit input" });
      edit.addEventListener("click", () => openEditor(job));
      return el("tr", { dataset: { jobId: job.jobId } },
        cell("select", box),
        cell("job", el("a", { href: `/jobs/${encodeURIComponent(job.jobId)}`, class: "mono", text: job.jobId })),
        cell("pipeline", job.pipeline),
        cell("error code", (job.error && job.error.cause) || "UNKNOWN"),
        cell("dead-lettered", time(job.finishedAt || job.updatedAt)),
        cell("attempt", String(job.attempt)),
        el("td", { class: "wrap mono", dataset: { label: "input" }, text: JSON.stringify(job.input) }),
        cell("", edit));
    }));
    $("letters-empty").hidden = board.jobs.length > 0;
    updateActions();
  }

  function updateActions() {
    const board = state.board;
    $("replay-selected").textContent = `Replay selected (${state.selected.size})`;
    $("replay-selected").disabled = state.selected.size === 0;
    $("replay-matching").textContent = `Replay all matching (${board ? board.matched : 0})`;
    $("replay-matching").disabled = !board || board.matched === 0;
    const boxes = [...document.querySelectorAll("#letters .pick")];
    $("select-page").checked = boxes.length > 0 && boxes.every((box) => box.checked);
  }

  // ---- preview, then replay with progress --------------------------------------------------------
  async function preview(selection) {
    $("dl-message").textContent = "";
    let result;
    try {
      result = await api("/api/dead-letters/preview", { method: "POST", body: JSON.stringify({ selection }) });
    } catch (error) {
      $("dl-message").textContent = `Could not preview: ${error.message}`;
      return;
    }
    state.pending = { selection, preview: result };
    $("preview-text").textContent = `Replay ${result.matched} job(s)?` +
      ` ${Object.entries(result.byPipeline).map(([p, n]) => `${p}: ${n}`).join(", ")}. Delivered to:`;
    $("preview-subs").replaceChildren(...Object.entries(result.bySubscription).map(([sub, n]) =>
      el("li", { dataset: { subscription: sub } }, el("span", { class: "mono", text: sub }), ` ${n} job(s)`)));
    $("preview-confirm").disabled = result.matched === 0;
    $("preview").hidden = false;
  }

  async function replay(selection, asOf, total) {
    const totals = { replayed: 0, skipped: 0, failed: 0 };
    $("progress").hidden = false;
    $("progress").dataset.state = "running";
    $("progress-jobs").replaceChildren();
    const show = () => {
      const done = totals.replayed + totals.skipped + totals.failed;
      $("progress-bar").max = Math.max(total, 1);
      $("progress-bar").value = Math.min(done, total);
      $("progress-text").textContent = `${done} of ${total}: replayed ${totals.replayed}, ` +
        `skipped ${totals.skipped} (replayed by someone else or changed since the preview), failed ${totals.failed}`;
    };
    show();
    for (;;) {
      let result;
      try {
        result = await api("/api/dead-letters/replay", {
          method: "POST", body: JSON.stringify({ selection, asOf, limit: BATCH }),
        });
      } catch (error) {
        $("progress").dataset.state = "error";
        $("progress-text").textContent = `Replay stopped: ${error.message}`;
        return totals;
      }
      totals.replayed += result.replayed;
      totals.skipped += result.skipped;
      totals.failed += result.failed;
      for (const failure of result.failures) {
        $("progress-jobs").append(el("li", { text: `${failure.jobId}: ${failure.error}` }));
      }
      show();
      // Nothing moved this call: what is left cannot be replayed now (each failure is listed).
      if (result.remaining === 0 || result.replayed + result.skipped === 0) break;
    }
    $("progress").dataset.state = "done";
    return totals;
  }

  async function confirmReplay() {
    const pending = state.pending;
    $("preview").hidden = true;
    if (!pending) return;
    state.pending = null;
    await replay(pending.selection, pending.preview.asOf, pending.preview.matched);
    state.selected.clear();
    await load();
  }

  // ---- the input editor --------------------------------------------------------------------------
  function openEditor(job) {
    state.editing = job;
    state.checked = null;
    $("editor").hidden = false;
    $("ed-job").textContent = job.jobId;
    $("ed-pipeline").textContent = job.pipeline;
    $("ed-errors").replaceChildren();
    $("ed-diff-box").hidden = true;
    $("ed-result").textContent = "";
    $("ed-save").disabled = true;
    $("ed-save-replay").disabled = true;
    $("ed-fields").replaceChildren(...Object.entries(job.input).map(([name, value]) => fieldRow(name, value)));
    $("editor").scrollIntoView({ block: "start" });
  }

  // One labelled input per field: text for strings, a checkbox for booleans, JSON for the rest.
  function fieldRow(name, value) {
    const id = `ed-field-${name}`;
    const input = typeof value === "boolean"
      ? el("input", { type: "checkbox", id, dataset: { field: name, kind: "boolean" } })
      : el("input", { type: "text", id, dataset: { field: name, kind: typeof value === "string" ? "string" : "json" } });
    if (typeof value === "boolean") input.checked = value;
    else input.value = typeof value === "string" ? value : JSON.stringify(value);
    input.addEventListener("input", uncheck);
    input.addEventListener("change", uncheck);
    const remove = el("button", { type: "button", class: "ed-remove", "aria-label": `Remove ${name}`, text: "×" });
    const row = el("div", { class: "ed-field", dataset: { field: name } },
      el("label", { for: id, text: name }), input, remove, el("p", { class: "field-error", role: "alert" }));
    remove.addEventListener("click", () => { row.remove(); uncheck(); });
    return row;
  }

  function uncheck() {
    state.checked = null;
    $("ed-save").disabled = true;
    $("ed-save-replay").disabled = true;
  }

  // A field the input lacks (one its pipeline's model requires, say), as text.
  function addField() {
    const name = $("ed-new-name").value.trim();
    if (!name || document.querySelector(`#ed-fields .ed-field[data-field="${CSS.escape(name)}"]`)) return;
    $("ed-fields").append(fieldRow(name, ""));
    $("ed-new-name").value = "";
    uncheck();
  }

  function editedInput() {
    const input = {};
    for (const field of document.querySelectorAll("#ed-fields input")) {
      const name = field.dataset.field;
      if (field.dataset.kind === "boolean") input[name] = field.checked;
      else if (field.dataset.kind === "string") input[name] = field.value;
      else {
        try { input[name] = JSON.parse(field.value); } catch { input[name] = field.value; }
      }
    }
    return input;
  }

  function showFieldErrors(errors) {
    for (const row of document.querySelectorAll("#ed-fields .ed-field")) {
      row.classList.remove("invalid");
      row.querySelector(".field-error").textContent = "";
    }
    const unplaced = [];
    for (const error of errors) {
      const row = document.querySelector(`#ed-fields .ed-field[data-field="${CSS.escape(error.field.split(".")[0])}"]`);
      if (row) {
        row.classList.add("invalid");
        row.querySelector(".field-error").textContent = error.message;
      } else unplaced.push(el("li", { dataset: { field: error.field } }, el("strong", { text: error.field }), `: ${error.message}`));
    }
    $("ed-errors").replaceChildren(...unplaced);
  }

  async function checkInput() {
    const job = state.editing;
    $("ed-result").textContent = "";
    let diff;
    try {
      diff = await api(`/api/dead-letters/${encodeURIComponent(job.jobId)}/input/check`, {
        method: "POST", body: JSON.stringify({ input: editedInput() }),
      });
    } catch (error) {
      showFieldErrors((error.body && error.body.fieldErrors) || []);
      $("ed-diff-box").hidden = true;
      $("ed-result").textContent = error.message;
      return;
    }
    showFieldErrors([]);
    state.checked = diff.input;
    const show = (value) => (value === null || value === undefined ? "–" : typeof value === "string" ? value : JSON.stringify(value));
    $("ed-diff").tBodies[0].replaceChildren(...diff.changes.map((c) => el("tr", { dataset: { field: c.field, change: c.change } },
      el("td", { class: "mono", dataset: { label: "field" }, text: c.field }),
      el("td", { class: "wrap before", dataset: { label: "before" } }, el("span", { text: show(c.before) })),
      el("td", { class: "wrap after", dataset: { label: "after" } }, el("span", { text: show(c.after) })))));
    $("ed-diff-box").hidden = false;
    $("ed-result").textContent = diff.changes.length ? "Check the changes, then save." : "Nothing changes.";
    $("ed-save").disabled = diff.changes.length === 0;
    $("ed-save-replay").disabled = diff.changes.length === 0;
  }

  async function saveInput(andReplay) {
    const job = state.editing;
    if (!state.checked) return;
    $("ed-save").disabled = true;
    $("ed-save-replay").disabled = true;
    try {
      await api(`/api/dead-letters/${encodeURIComponent(job.jobId)}/input`, {
        method: "PUT", body: JSON.stringify({ input: state.checked }),
      });
    } catch (error) {
      showFieldErrors((error.body && error.body.fieldErrors) || []);
      $("ed-result").textContent = `Not saved: ${error.message}`;
      return;
    }
    state.checked = null;
    const link = el("a", { href: `/jobs/${encodeURIComponent(job.jobId)}`, id: "ed-job-link", text: job.jobId });
    if (!andReplay) {
      $("ed-result").replaceChildren("Saved (audited). ", link);
      return load();
    }
    const selection = { jobIds: [job.jobId] };
    try {
      const check = await api("/api/dead-letters/preview", { method: "POST", body: JSON.stringify({ selection }) });
      const totals = await replay(selection, check.asOf, check.matched);
      $("ed-result").replaceChildren(totals.replayed ? "Saved and replayed: follow " : "Saved; not replayed: ", link);
    } catch (error) {
      $("ed-result").replaceChildren(`Saved; the replay failed (${error.message}): `, link);
    }
    await load();
  }

  // ---- loading -----------------------------------------------------------------------------------
  async function load() {
    const params = new URLSearchParams(apiFilter(filterFromUrl()));
    let board;
    try {
      board = await api(`/api/dead-letters?${params}`);
    } catch (error) {
      if (error.status === 401) return showLogin("Sign in to see the dead letters.");
      $("dl").hidden = false;
      $("login").hidden = true;
      $("dl-message").textContent = `Could not load the dead letters: ${error.message}`;
      return;
    }
    $("login").hidden = true;
    $("dl").hidden = false;
    state.board = board;
    render(board);
  }

  const showLogin = (message) => window.jobtrail.showLogin("dl", message);

  document.addEventListener("DOMContentLoaded", () => {
    $("clear-filter").addEventListener("click", () => setFilter({}));
    $("select-page").addEventListener("change", () => {
      for (const box of document.querySelectorAll("#letters .pick")) {
        box.checked = $("select-page").checked;
        const id = box.closest("tr").dataset.jobId;
        if (box.checked) state.selected.add(id);
        else state.selected.delete(id);
      }
      updateActions();
    });
    $("replay-selected").addEventListener("click", () => preview({ jobIds: [...state.selected] }));
    $("replay-matching").addEventListener("click", () => preview({ filter: apiFilter(filterFromUrl()) }));
    $("preview-confirm").addEventListener("click", confirmReplay);
    $("preview-cancel").addEventListener("click", () => { state.pending = null; $("preview").hidden = true; });
    $("ed-form").addEventListener("submit", (event) => { event.preventDefault(); checkInput(); });
    $("ed-save").addEventListener("click", () => saveInput(false));
    $("ed-save-replay").addEventListener("click", () => saveInput(true));
    $("ed-add-field").addEventListener("click", addField);
    $("ed-close").addEventListener("click", () => { $("editor").hidden = true; state.editing = null; });
    window.addEventListener("popstate", load);
    window.jobtrail.signInAndStart("dl", load);
  });
})();
