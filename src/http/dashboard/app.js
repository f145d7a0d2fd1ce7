// Celeriac dashboard: fills the server-rendered pages from /api/v1. Vanilla JS, no build step.
// Data is always written with textContent (never as HTML). The API token, when the server
// needs one, is kept in sessionStorage (or localStorage with "remember") and sent as a bearer
// token, exactly like any other API client: the dashboard has no powers of its own.
"use strict";

(function () {
  const TOKEN_KEY = "celeriac.api-token";
  const body = document.body;
  const page = body.dataset.page;
  const FINISHED = ["SUCCESS", "FAILURE", "REVOKED"];

  // ─── helpers ──────────────────────────────────────────────────────────────────────────────

  function $(sel) { return document.querySelector(sel); }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function token() {
    return sessionStorage.getItem(TOKEN_KEY) || localStorage.getItem(TOKEN_KEY);
  }

  class ApiError extends Error {
    constructor(status, message, detail) {
      super(message);
      this.status = status;
      this.detail = detail;
    }
  }

  async function api(method, path, payload) {
    const headers = { Accept: "application/json" };
    const t = token();
    if (t) headers.Authorization = "Bearer " + t;
    const init = { method, headers };
    if (payload !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(payload);
    }
    const r = await fetch("/api/v1" + path, init);
    let data = null;
    try { data = await r.json(); } catch (_) { data = null; }
    if (r.status === 401) {
      showLogin(t ? "That token was not accepted." : null);
      throw new ApiError(401, "log in first", data && data.error);
    }
    if (!r.ok) {
      const msg = data && data.error ? data.error.message : r.status + " " + r.statusText;
      throw new ApiError(r.status, msg, data && data.error);
    }
    return data;
  }

  function flash(message, kind) {
    const f = $("#flash");
    f.textContent = message;
    f.className = kind || "info";
    f.hidden = !message;
  }

  function showError(e) {
    if (e instanceof ApiError && e.status === 401) return;
    staleError = true;
    if (e instanceof ApiError && e.status === 403) {
      flash("Not allowed with this token: " + e.message, "error");
    } else {
      flash(e.message || String(e), "error");
    }
  }

  function pad(n) { return String(n).padStart(2, "0"); }

  function fmtTime(iso) {
    if (!iso) return "—";
    const d = new Date(iso);
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
      pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }

  function timeCell(iso) {
    return el("time", { datetime: iso || "", title: iso || "" }, fmtTime(iso));
  }

  function fmtDuration(s) {
    if (s === null || s === undefined || isNaN(s)) return "—";
    if (s < 1) return Math.round(s * 1000) + " ms";
    if (s < 60) return s.toFixed(s < 10 ? 2 : 1) + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + Math.round(s % 60) + " s";
    if (s < 86400) return Math.floor(s / 3600) + " h " + Math.round((s % 3600) / 60) + " min";
    return Math.floor(s / 86400) + " d " + Math.round((s % 86400) / 3600) + " h";
  }

  function between(a, b) {
    if (!a || !b) return null;
    return (new Date(b) - new Date(a)) / 1000;
  }

  function badge(state) {
    return el("span", { class: "badge s-" + String(state).toLowerCase() }, state);
  }

  function json(v) {
    return v === undefined ? "" : JSON.stringify(v, null, 2);
  }

  function taskLink(id, text) {
    return el("a", { href: "/tasks/" + encodeURIComponent(id), class: "mono" }, text || id);
  }

  function fill(tbody, rows, empty, cols) {
    tbody.replaceChildren();
    if (!rows.length) {
      tbody.append(el("tr", {}, el("td", { colspan: cols, class: "muted" }, empty)));
      return;
    }
    for (const r of rows) tbody.append(r);
  }

  // Run `load` now and every `ms` while the tab is visible (and `keepGoing()` says so).
  function refreshEvery(ms, load, keepGoing) {
    let timer = null;
    const tick = async () => {
      if (!document.hidden) {
        try { await load(); flashClearIfStale(); } catch (e) { showError(e); }
      }
      if (!keepGoing || keepGoing()) timer = setTimeout(tick, ms);
    };
    tick();
    return () => clearTimeout(timer);
  }

  let staleError = false;
  function flashClearIfStale() {
    if (staleError) { flash(""); staleError = false; }
  }

  async function act(question, method, path, payload) {
    if (!window.confirm(question)) return null;
    try {
      const r = await api(method, path, payload);
      return r;
    } catch (e) {
      showError(e);
      return null;
    }
  }

  // ─── login ────────────────────────────────────────────────────────────────────────────────

  let reload = () => {};

  function showLogin(message) {
    const box = $("#login");
    box.hidden = false;
    $("main").hidden = true;
    if (message) flash(message, "error");
    $("#login-token").focus();
  }

  function setupLogin() {
    const form = $("#login-form");
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const t = $("#login-token").value.trim();
      if (!t) return;
      sessionStorage.removeItem(TOKEN_KEY);
      localStorage.removeItem(TOKEN_KEY);
      ($("#login-remember").checked ? localStorage : sessionStorage).setItem(TOKEN_KEY, t);
      $("#login-token").value = "";
      $("#login").hidden = true;
      $("main").hidden = false;
      $("#logout").hidden = false;
      flash("");
      reload();
    });
    const out = $("#logout");
    out.hidden = body.dataset.auth !== "token" || !token();
    out.addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      localStorage.removeItem(TOKEN_KEY);
      window.location.reload();
    });
    if (body.dataset.auth === "token" && !token()) showLogin();
  }

  // ─── overview ─────────────────────────────────────────────────────────────────────────────

  function card(label, value, id) {
    return el("div", { class: "stat", id }, el("div", { class: "v" }, value), el("div", { class: "l" }, label));
  }

  function chart(points) {
    const NS = "http://www.w3.org/2000/svg";
    const W = 600, H = 160;
    const svg = document.createElementNS(NS, "svg");
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    svg.setAttribute("preserveAspectRatio", "none");
    const series = [["succeeded", "ok"], ["failed", "bad"], ["retried", "warn"], ["revoked", "rev"]];
    const total = (p) => series.reduce((s, [k]) => s + (p[k] || 0), 0);
    const max = Math.max(1, ...points.map(total));
    const bw = W / Math.max(points.length, 1);
    points.forEach((p, i) => {
      let y = H;
      for (const [k, cls] of series) {
        const v = p[k] || 0;
        if (!v) continue;
        const h = (v / max) * (H - 4);
        y -= h;
        const r = document.createElementNS(NS, "rect");
        r.setAttribute("x", (i * bw + 0.5).toFixed(1));
        r.setAttribute("y", y.toFixed(1));
        r.setAttribute("width", Math.max(bw - 1, 0.5).toFixed(1));
        r.setAttribute("height", h.toFixed(1));
        r.setAttribute("class", cls);
        const title = document.createElementNS(NS, "title");
        title.textContent = fmtTime(p.minute) + ": " + v + " " + k;
        r.append(title);
        svg.append(r);
      }
    });
    const axis = el("div", { class: "axis" },
      el("span", {}, "−" + points.length + " min"),
      el("span", {}, "max " + max + "/min"),
      el("span", {}, "now"));
    const box = document.createDocumentFragment();
    box.append(svg, axis);
    return box;
  }

  function initOverview() {
    const load = async () => {
      const [q, w, t] = await Promise.all([
        api("GET", "/queues"),
        api("GET", "/workers"),
        api("GET", "/stats/throughput?minutes=60"),
      ]);
      const sum = (k) => q.queues.reduce((s, x) => s + x[k], 0);
      const alive = w.workers.filter((x) => x.alive).length;
      const rate = q.queues.reduce((s, x) => s + x.rate_per_s, 0);
      $("#totals").replaceChildren(
        card("ready", sum("ready"), "total-ready"),
        card("running", sum("running"), "total-running"),
        card("scheduled", sum("scheduled"), "total-scheduled"),
        card("workers alive", alive, "total-workers"),
        card("finished/s (1 min)", rate.toFixed(1), "total-rate"),
      );
      $("#chart").replaceChildren(chart(t.points));
      const rows = q.queues.map((x) => el("tr", { "data-queue": x.name },
        el("td", {}, el("a", { href: "/tasks?queue=" + encodeURIComponent(x.name) }, x.name)),
        el("td", { class: "n" }, x.ready),
        el("td", { class: "n" }, x.scheduled),
        el("td", { class: "n" }, x.running),
        el("td", { class: "n" }, x.throttled),
        el("td", { class: "n" }, x.oldest_ready_age_s
 === null ? "—" : fmtDuration(x.oldest_ready_age_s)),
        el("td", { class: "n" }, x.workers),
        el("td", { class: "n" }, x.rate_per_s.toFixed(1)),
        el("td", {}, x.paused ? badge("PAUSED") : "active"),
        el("td", { class: "row-actions" },
          el("button", {
            type: "button", class: "small",
            onclick: async () => {
              const verb = x.paused ? "resume" : "pause";
              const q2 = x.paused
                ? "Resume queue " + x.name + "? Workers start claiming from it again."
                : "Pause queue " + x.name + "? Workers stop claiming from it; running tasks finish.";
              if (await act(q2, "POST", "/queues/" + encodeURIComponent(x.name) + "/" + verb)) {
                flash("Queue " + x.name + " " + (x.paused ? "resumed" : "paused") + ".", "ok");
                load().catch(showError);
              }
            },
          }, x.paused ? "Resume" : "Pause"),
          " ",
          el("button", {
            type: "button", class: "small danger",
            onclick: async () => {
              const r = await act("Purge queue " + x.name + "? Every waiting task in it is revoked (running tasks finish).",
                "POST", "/queues/" + encodeURIComponent(x.name) + "/purge");
              if (r) {
                flash("Purged " + r.purged + " task(s) from " + x.name + ".", "ok");
                load().catch(showError);
              }
            },
          }, "Purge"),
        ),
      ));
      fill($("#queues tbody"), rows, "No queues yet.", 9);
    };
    reload = () => load().catch(showError);
    refreshEvery(5000, load);
  }

  // ─── task list ────────────────────────────────────────────────────────────────────────────

  function toLocalInput(iso) {
    const d = new Date(iso);
    if (isNaN(d)) return "";
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + "T" +
      pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }

  function initTasks() {
    const params = new URLSearchParams(window.location.search);
    $("#f-state").value = (params.get("state") || "").toUpperCase();
    $("#f-name").value = params.get("name") || "";
    $("#f-queue").value = params.get("queue") || "";
    const since = params.get("since");
    if (since) $("#f-since").value = toLocalInput(since);

    $("#find").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const id = $("#find-id").value.trim();
      if (id) window.location.href = "/tasks/" + encodeURIComponent(id);
    });
    $("#filters").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const p = new URLSearchParams();
      for (const [k, sel] of [["state", "#f-state"], ["name", "#f-name"], ["queue", "#f-queue"]]) {
        const v = $(sel).value.trim();
        if (v) p.set(k, v);
      }
      const s = $("#f-since").value;
      if (s) p.set("since", new Date(s).toISOString());
      window.location.href = "/tasks" + (p.toString() ? "?" + p : "");
    });

    const load = async () => {
      const q = new URLSearchParams();
      for (const k of ["state", "name", "queue", "since", "cursor", "limit"]) {
        const v = params.get(k);
        if (v) q.set(k, v);
      }
      const data = await api("GET", "/tasks" + (q.toString() ? "?" + q : ""));
      const rows = data.tasks.map((t) => el("tr", { "data-task-id": t.id, "data-state": t.state },
        el("td", {}, timeCell(t.received_at)),
        el("td", {}, el("a", { href: "/tasks/" + t.id }, t.name)),
        el("td", {}, badge(t.celery_state)),
        el("td", {}, t.queue),
        el("td", { class: "n" }, t.retries),
        el("td", { class: "n" }, fmtDuration(between(t.started_at, t.finished_at))),
        el("td", { class: "err" }, t.error_type ? t.error_type + ": " + (t.error_message || "") : ""),
        el("td", {}, taskLink(t.id, t.id.slice(0, 8))),
      ));
      fill($("#task-list tbody"), rows, "No tasks match.", 8);
      const older = $("#older");
      older.hidden = !data.next_cursor;
      older.onclick = () => {
        params.set("cursor", data.next_cursor);
        window.location.search = params.toString();
      };
      $("#newest").hidden = !params.get("cursor");
    };
    reload = () => load().catch(showError);
    // The first page refreshes itself; older pages stay put (they are history).
    refreshEvery(5000, load, () => !params.get("cursor"));
  }

  // ─── task detail ──────────────────────────────────────────────────────────────────────────

  function initTask() {
    const id = body.dataset.taskId;
    let finished = false;
    const load = async () => {
      const t = await api("GET", "/tasks/" + encodeURIComponent(id));
      finished = FINISHED.includes(t.state);
      document.title = t.name + " · " + t.celery_state + " · Celeriac";
      $("#task-name").textContent = t.name;
      const st = $("#task-state");
      st.textContent = t.celery_state;
      st.className = "badge s-" + t.celery_state.toLowerCase();
      st.dataset.state = t.state;

      const facts = [
        ["Id", el("span", { class: "mono" }, t.id)],
        ["State", t.state + (t.celery_state !== t.state ? " (Celery: " + t.celery_state + ")" : "")],
        ["Queue", el("a", { href: "/tasks?queue=" + encodeURIComponent(t.queue) }, t.queue)],
        ["Priority", t.priority],
        ["Retries", t.retries + (t.options.max_retries !== null ? " of " + t.options.max_retries : "")],
        ["Attempts", t.attempt + (t.lost ? " (" + t.lost + " lost with their worker)" : "")],
        ["Worker", t.worker_id ? el("span", { class: "mono" }, t.worker_id) : "—"],
        ["Runtime", fmtDuration(t.runtime_s)],
      ];
      if (t.revoked_reason) facts.push(["Revoked", t.revoked_reason]);
      if (t.terminate_requested) facts.push(["Terminate", "requested"]);
      if (t.retry_of) facts.push(["Retry of", taskLink(t.retry_of)]);
      if (t.retried_as) facts.push(["Retried as", taskLink(t.retried_as)]);
      $("#facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));

      const steps = [["Received", t.received_at, null]];
      if (t.eta && t.eta !== t.received_at) steps.push(["Due", t.eta, null]);
      if (t.expires_at) steps.push(["Expires", t.expires_at, null]);
      if (t.started_at) steps.push(["Started" + (t.attempt > 1 ? " (attempt " + t.attempt + ")" : ""), t.started_at,
        "waited " + fmtDuration(between(t.eta, t.started_at))]);
      if (t.finished_at) steps.push([t.state === "SUCCESS" ? "Succeeded" : t.state === "FAILURE" ? "Failed" : "Revoked",
        t.finished_at, t.runtime_s !== null ? "ran " + fmtDuration(t.runtime_s) : null]);
      $("#timeline").replaceChildren(...steps.map(([label, at, note]) =>
        el("li", {}, el("strong", {}, label), " ", timeCell(at), note ? el("span", { class: "muted" }, " · " + note) : null)));

      $("#error-card").hidden = !t.error;
      if (t.error) {
        $("#error-line").textContent = t.error.type + ": " + t.error.message;
        $("#traceback").textContent = t.error.traceback || "(no traceback)";
      }
      $("#result-card").hidden = t.state !== "SUCCESS";
      $("#result").textContent = json(t.result);
      $("#progress-card").hidden = !t.progress;
      $("#progress").textContent = t.progress ? (t.progress.state || "") + "\n" + json(t.progress.meta) : "";
      $("#args").textContent = json(t.args);
      $("#kwargs").textContent = json(t.kwargs);
      $("#headers").textContent = json({ headers: t.headers, options: t.options });

      $("#action-retry").hidden = !["FAILURE", "REVOKED"].includes(t.state) || !!t.retried_as;
      $("#action-revoke").hidden = finished;
      $("#action-terminate").hidden = t.state !== "STARTED";
      return t;
    };

    $("#action-retry").addEventListener("click", async () => {
      const r = await act("Run task " + id + " again? A copy is enqueued as a new task; this one keeps its outcome.",
        "POST", "/tasks/" + encodeURIComponent(id) + "/retry");
      if (r) window.location.href = "/tasks/" + r.id;
    });
    $("#action-revoke").addEventListener("click", async () => {
      const r = await act("Revoke task " + id + "? A waiting task will not run; a running one finishes.",
        "POST", "/tasks/" + encodeURIComponent(id) + "/revoke", { terminate: false });
      if (r) { flash("Revoked: now " + r.celery_state + ".", "ok"); reload(); }
    });
    $("#action-terminate").addEventListener("click", async () => {
      const r = await act("Terminate task " + id + "? Its worker cancels it and it ends REVOKED.",
        "POST", "/tasks/" + encodeURIComponent(id) + "/revoke", { terminate: true });
      if (r) { flash("Terminate requested.", "ok"); reload(); }
    });

    reload = () => load().catch(showError);
    // Refresh while the task can still change.
    refreshEvery(1500, load, () => !finished);
  }

  // ─── workers ──────────────────────────────────────────────────────────────────────────────

  function initWorkers() {
    const load = async () => {
      const data = await api("GET", "/workers");
      const rows = data.workers.map((w) => el("tr", { "data-worker-id": w.id },
        el("td", {}, w.hostname),
        el("td", { class: "n" }, w.pid),
        el("td", {}, w.queues.join(", ")),
        el("td", { class: "n" }, w.concurrency),
        el("td", { class: "n" }, w.running),
        el("td", {}, fmtDuration(w.heartbeat_age_s) + " ago"),
        el("td", {}, badge(!w.alive ? "DEAD" : w.stopping ? "STOPPING" : "ALIVE")),
        el("td", {}, timeCell(w.started_at)),
        el("td", {}, w.version),
      ));
      fill($("#workers tbody"), rows, "No workers registered.", 9);
    };
    reload = () => load().catch(showError);
    refreshEvery(5000, load);
  }

  // ─── periodic tasks ───────────────────────────────────────────────────────────────────────

  // "in 5 min" / "3 min ago", from the browser's clock (close enough for people).
  function relative(iso) {
    if (!iso) return "";
    const s = (new Date(iso) - Date.now()) / 1000;
    if (Math.abs(s) < 1) return "now";
    return s > 0 ? "in " + fmtDuration(s) : fmtDuration(-s) + " ago";
  }

  function when(iso) {
    if (!iso) return "—";
    return el("span", {}, timeCell(iso), el("div", { class: "muted small" }, relative(iso)));
  }

  // The schedule as written, under its words: crontab fields, interval, instant, place.
  function scheduleRaw(s) {
    if (!s) return "";
    switch (s.kind) {
      case "crontab":
        return [s.minute, s.hour, s.day_of_month, s.month_of_year, s.day_of_week].join(" ") + " · " + s.timezone;
      case "interval": return "interval " + s.every + " " + s.period;
      case "clocked": return "clocked " + s.at;
      case "solar": return "solar " + s.event + " " + s.latitude + ", " + s.longitude;
      default: return "";
    }
  }

  const PROBLEM_ACTION = { skip: "skipped by beat", disable: "disabled by beat", warn: "scheduled anyway" };

  function beatLine(b) {
    const st = $("#beat-state");
    st.textContent = b.leader_alive ? "RUNNING" : "NOT RUNNING";
    st.className = "badge " + (b.leader_alive ? "s-alive" : "s-dead");
    if (!b.leader_alive) {
      return "No beat is running: periodic tasks are not being sent. Start one with " +
        "\"celeriac beat\" (or \"celeriac dev\"); any number can run, one leads.";
    }
    const parts = [
      "Leader " + (b.leader_hostname || "?") + " (pid " + (b.leader_pid === null ? "?" : b.leader_pid) + ")" +
        (b.leader_since ? ", leading for " + fmtDuration(-((new Date(b.leader_since) - Date.now()) / 1000)) : ""),
      "last tick " + (b.tick_age_s === null ? "—" : fmtDuration(b.tick_age_s) + " ago"),
      (b.schedules === null ? 0 : b.schedules) + " schedule(s) loaded" +
        (b.bad_rows ? ", " + b.bad_rows + " with problems" : ""),
      b.instances + " beat process(es)",
    ];
    if (b.sent_5m > 0) {
      parts.push("last 5 min: " + b.sent_5m + " sent, lag p50 " + fmtDuration(b.lag_p50_s) +
        ", p99 " + fmtDuration(b.lag_p99_s) + ", max " + fmtDuration(b.lag_max_s));
    } else {
      parts.push("nothing sent in the last 5 min");
    }
    return parts.join(" · ");
  }

  function initPeriodic() {
    let rows = [];
    const show = $("#p-show");
    const search = $("#p-search");
    const params = new URLSearchParams(window.location.search);
    show.value = params.get("show") || "";
    search.value = params.get("q") || "";

    const render = () => {
      const q = search.value.trim().toLowerCase();
      const wanted = rows.filter((p) =>
        (show.value !== "enabled" || p.enabled) &&
        (show.value !== "disabled" || !p.enabled) &&
        (show.value !== "problems" || p.problem) &&
        (!q || p.name.toLowerCase().includes(q) || p.task.toLowerCase().includes(q)));
      const trs = wanted.map((p) => {
        const path = "/periodic-tasks/" + encodeURIComponent(p.name);
        const toggle = el("button", {
          type: "button", class: "small" + (p.enabled ? " danger" : ""), "data-action": p.enabled ? "disable" : "enable",
          onclick: async () => {
            const verb = p.enabled ? "disable" : "enable";
            const question = p.enabled
              ? "Disable periodic task " + p.name + "? Beat stops sending it (its last run is forgotten, as in Django admin)."
              : "Enable periodic task " + p.name + "? Beat sends it again from its next slot.";
            const r = await act(question, "POST", path + "/" + verb);
            if (r) {
              flash("Periodic task " + p.name + " " + verb + "d.", "ok");
              reload();
            }
          },
        }, p.enabled ? "Disable" : "Enable");
        const runNow = el("button", {
          type: "button", class: "small", "data-action": "run",
          onclick: async () => {
            const r = await act("Send " + p.task + " now for periodic task " + p.name + "? Its schedule is not changed.",
              "POST", path + "/run");
            if (r) {
              flash("Sent " + p.name + " as task " + r.id + ".", "ok");
              $("#flash").append(" ", taskLink(r.id, "open"));
              reload();
            }
          },
        }, "Run now");
        return el("tr", { "data-name": p.name, "data-enabled": String(p.enabled) },
          el("td", { "data-label": "Name", class: "wrap" }, el("strong", {}, p.name),
            p.description ? el("div", { class: "muted small" }, p.description) : null,
            p.problem ? el("div", { class: "problem small" }, "Problem: " + p.problem.reason + " (" +
              (PROBLEM_ACTION[p.problem.action] || p.problem.action) + ")") : null),
          el("td", { "data-label": "Task", class: "wrap" }, el("span", { class: "mono" }, p.task),
            p.queue ? el("div", { class: "muted small" }, "queue " + p.queue) : null),
          el("td", { "data-label": "Schedule", class: "wrap" }, el("span", { class: "words" }, p.schedule_text),
            el("div", { class: "muted small mono" }, scheduleRaw(p.schedule) + (p.one_off ? " · one-off" : ""))),
          el("td", { "data-label": "Enabled" }, badge(p.enabled ? "ENABLED" : "DISABLED")),
          el("td", { "data-label": "Last run", class: "last-run" }, when(p.last_run_at)),
          el("td", { "data-label": "Runs", class: "n runs" }, p.total_run_count),
          el("td", { "data-label": "Next run", class: "next-run" }, when(p.next_fire_at)),
          el("td", { "data-label": "Actions", class: "row-actions" }, toggle, " ", runNow),
        );
      });
      fill($("#periodic tbody"), trs,
        rows.length ? "No periodic task matches." : "No periodic tasks yet.", 8);
    };

    const keepInUrl = () => {
      const p = new URLSearchParams();
      if (show.value) p.set("show", show.value);
      if (search.value.trim()) p.set("q", search.value.trim());
      history.replaceState(null, "", "/periodic" + (p.toString() ? "?" + p : ""));
      render();
    };
    show.addEventListener("change", keepInUrl);
    search.addEventListener("input", keepInUrl);
    $("#p-filters").addEventListener("submit", (ev) => ev.preventDefault());

    const load = async () => {
      const [list, beat] = await Promise.all([api("GET", "/periodic-tasks"), api("GET", "/beat")]);
      rows = list.periodic_tasks;
      $("#beat-line").textContent = beatLine(beat);
      render();
    };
    reload = () => load().catch(showError);
    refreshEvery(5000, load);
  }

  // ─── start ────────────────────────────────────────────────────────────────────────────────

  setupLogin();
  const pages = {
    overview: initOverview, tasks: initTasks, task: initTask, workers: initWorkers, periodic: initPeriodic,
  };
  if (body.dataset.auth === "token" && !token()) {
    // Wait for the login form; then start the page.
    const start = pages[page];
    reload = () => { if (start) { start(); } };
  } else if (pages[page]) {
    pages[page]();
  }
})();
