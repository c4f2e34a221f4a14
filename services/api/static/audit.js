// The audit page (/audit): who did what, when, with which parameters and result. Admins see every
// action and may filter by user; a plain user sees their own (GET /api/audit enforces both).
// Filters live in the query string, so a view can be shared and reloaded. Signs in as the other
// pages do: the tab's token, a one-time sign-in link (#login=), or Identity-Aware Proxy's header.
(() => {
  "use strict";

  const { $, el, api, time } = window.jobtrail;
  const PAGE = 100;
  const state = { principal: null, cursor: null, shown: 0 };

  // datetime-local holds the viewer's local time; the API takes RFC 3339 in UTC.
  const toApiTime = (local) => (local ? new Date(local).toISOString() : "");
  const fromApiTime = (iso) => {
    const t = new Date(iso);
    if (Number.isNaN(t.getTime())) return "";
    return new Date(t.getTime() - t.getTimezoneOffset() * 60000).toISOString().slice(0, 19);
  };

  function viewFromUrl() {
    const params = new URLSearchParams(location.search);
    $("a-actor").value = params.get("actor") || "";
    $("a-action").value = params.get("action") || "";
    $("a-since").value = params.get("since") ? fromApiTime(params.get("since")) : "";
    $("a-until").value = params.get("until") ? fromApiTime(params.get("until")) : "";
  }

  function filters() {
    const params = {};
    const actor = $("a-actor").value.trim();
    // "alice" means the person alice; "machine:ci" names a machine principal as audit records do.
    if (actor) params.actor = actor.includes(":") ? actor : `user:${actor}`;
    if ($("a-action").value) params.action = $("a-action").value;
    if ($("a-since").value) params.since = toApiTime($("a-since").value);
    if ($("a-until").value) params.until = toApiTime($("a-until").value);
    return params;
  }

  const saveView = () => window.jobtrail.saveViewInUrl(filters());

  function row(record) {
    const params = Object.keys(record.params || {}).length ? JSON.stringify(record.params) : "–";
    const cells = [
      ["When", time(record.at), "at"],
      ["Who", record.actor, "actor"],
      ["Action", record.action, "action"],
      ["Target", record.target, "target"],
      ["Parameters", params, "params"],
      ["Result", record.result, "result"],
    ];
    const tr = el("tr", { "data-audit-id": record.auditId });
    for (const [label, text, col] of cells) {
      tr.append(el("td", { "data-label": label, "data-col": col, class: col === "params" || col === "result" ? "wrap" : "", title: col === "at" ? record.at : "", text }));
    }
    return tr;
  }

  async function load(more = false) {
    const query = new URLSearchParams({ ...filters(), limit: String(PAGE) });
    if (more && state.cursor) query.set("cursor", state.cursor);
    $("a-message").textContent = "";
    try {
      const page = await api(`/api/audit?${query}`);
      const body = $("audit-table").tBodies[0];
      if (!more) {
        body.replaceChildren();
        state.shown = 0;
      }
      body.append(...page.audit.map(row));
      state.shown += page.audit.length;
      state.cursor = page.nextCursor;
      $("a-more").hidden = !page.nextCursor;
      $("a-count").textContent = `${state.shown}${page.nextCursor ? "+" : ""}`;
      if (!state.shown) $("a-message").textContent = "No action matches these filters.";
    } catch (error) {
      if (error.status === 401) return showLogin("Sign in to see the audit trail.");
      $("a-message").textContent = error.status === 403
        ? "Users see their own actions only."
        : `Could not load the audit trail: ${error.message}`;
    }
  }

  async function start() {
    try {
      state.principal = await api("/api/auth/me");
    } catch (error) {
      return showLogin(error.status === 401 ? "" : `Could not reach the API: ${error.message}`);
    }
    $("login").hidden = true;
    $("audit").hidden = false;
    const admin = state.principal.role === "admin";
    $("who").textContent = `Signed in as ${state.principal.subject} (${state.principal.role})`;
    $("scope").textContent = admin ? "Every action, by everyone." : "Your own actions.";
    $("a-actor").closest("label").hidden = !admin;
    load();
  }

  const showLogin = (message) => window.jobtrail.showLogin("audit", message);

  document.addEventListener("DOMContentLoaded", () => {
    viewFromUrl();
    $("audit-filters").addEventListener("submit", (event) => {
      event.preventDefault();
      saveView();
      load();
    });
    $("a-more").addEventListener("click", () => load(true));
    window.addEventListener("popstate", () => {
      viewFromUrl();
      load();
    });
    window.jobtrail.signInAndStart("audit", start);
  });
})();
