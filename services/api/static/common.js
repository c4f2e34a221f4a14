// What every page of the console shares: the API client, the DOM builder, formatting and signing in.
// A plain script (no modules, no build step) that each page loads before its own; the page's script
// reads it from window.jobtrail. Everything untrusted goes into the DOM through textContent.
"use strict";

window.jobtrail = (() => {
  const TOKEN_KEY = "jobtrail.token";

  // The tab's session: the token (null behind Identity-Aware Proxy, whose own header signs each
  // request in) and what a page does when the API refuses it mid-session.
  const session = { token: sessionStorage.getItem(TOKEN_KEY), onRefused: null };

  const $ = (id) => document.getElementById(id);

  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (key === "text") node.textContent = value;
      else if (key === "class") node.className = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(key, value);
    }
    node.append(...children);
    return node;
  }

  // ---- API ------------------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.message) || `HTTP ${status}`);
      this.status = status;
      this.body = body; // the API's error body: code, message, fieldErrors
    }
  }

  const authHeaders = () => (session.token ? { Authorization: `Bearer ${session.token}` } : {});

  async function api(path, options = {}) {
    const response = await fetch(path, {
      ...options,
      headers: {
        Accept: "application/json",
        ...(options.body ? { "Content-Type": "application/json" } : {}),
        ...authHeaders(),
        ...(options.headers || {}),
      },
    });
    const body = await response.json().catch(() => null);
    if (response.status === 401 && session.onRefused) session.onRefused();
    if (!response.ok) throw new ApiError(response.status, body);
    return body;
  }

  const TERMINAL = new Set(["succeeded", "failed", "timed_out", "cancelled"]);

  // A page's view (filters, sort) lives in the query string, so it can be shared and reloaded.
  function saveViewInUrl(params, replace = false) {
    const query = new URLSearchParams(params).toString();
    const url = location.pathname + (query ? `?${query}` : "");
    if (url === location.pathname + location.search) return;
    if (replace) history.replaceState(null, "", url);
    else history.pushState(null, "", url);
  }

  // ---- formatting -----------------------------------------------------------------------------
  const time = (iso) => (iso ? new Date(iso).toLocaleString() : "–");

  function duration(msValue) {
    if (msValue == null || Number.isNaN(msValue)) return "–";
    const s = msValue / 1000;
    if (s < 1) return `${Math.round(msValue)} ms`;
    if (s < 60) return `${s.toFixed(1)} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m}m ${Math.floor(s % 60)}s`;
    return `${Math.floor(m / 60)}h ${m % 60}m`;
  }

  // ---- signing in -----------------------------------------------------------------------------
  function useToken(token) {
    session.token = token;
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  }

  // The sign-in form replaces the page's own section (pageId) until the visitor is signed in.
  function showLogin(pageId, message = "") {
    $(pageId).hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = message;
    $("token-input").value = "";
    $("token-input").focus();
  }

  function onTokenSubmitted(callback) {
    $("login-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const token = $("token-input").value.trim();
      if (token) callback(token);
    });
  }

  const loginCodeInUrl = () => new URLSearchParams(location.hash.slice(1)).get("login");

  // A sign-in link (make stack prints one): a one-time code in the URL's fragment, which the
  // browser never sends anywhere; it is traded once for a session token and wiped from the URL.
  // Resolves to the token, or to null after showing why the link was refused.
  async function redeemLoginCode(code, pageId) {
    history.replaceState(null, "", location.pathname + location.search);
    try {
      const login = await api("/api/auth/login", { method: "POST", body: JSON.stringify({ code }) });
      return login.token;
    } catch (error) {
      showLogin(pageId, error instanceof ApiError && error.status === 401
        ? "This sign-in link was already used or has expired. Ask for a new one."
        : `Could not reach the API: ${error.message}`);
      return null;
    }
  }

  // For a page that asks the API itself whether the visitor is signed in (start() shows the sign-in
  // form on a 401): the tab's token, a sign-in link, or Identity-Aware Proxy's header.
  async function signInAndStart(pageId, start) {
    onTokenSubmitted((token) => {
      useToken(token);
      start();
    });
    const code = loginCodeInUrl();
    if (!code) return start();
    const token = await redeemLoginCode(code, pageId);
    if (token) {
      useToken(token);
      start();
    }
  }

  return {
    $, el, ApiError, api, authHeaders, TERMINAL, saveViewInUrl, time, duration, session, useToken, showLogin, onTokenSubmitted,
    loginCodeInUrl, redeemLoginCode, signInAndStart,
  };
})();
