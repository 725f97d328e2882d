// Faramesh dashboard: live updates over server-sent events, relative times, and the
// deny-needs-a-reason check. Hand-written, no dependencies. Data from the server is
// only ever written with textContent, never parsed as HTML.
"use strict";

(function () {
  const RISKS = ["low", "medium", "high", "critical"];
  const STATUSES = {
    pending_approval: "Pending approval",
    allowed: "Allowed",
    denied: "Denied",
    approved: "Approved",
    succeeded: "Succeeded",
    failed: "Failed",
    cancelled: "Cancelled",
    executing: "Executing",
    outcome_unknown: "Outcome unknown",
  };
  const EVENTS = {
    "action.created": "Submitted",
    "action.submitted": "Submitted",
    "action.approval_recorded": "Approval recorded",
    "action.approved": "Approved",
    "action.denied": "Denied",
    "action.expired": "Expired",
    "action.cancelled": "Cancelled",
    "action.picked_up": "Agent picked up the approval",
    "action.reattached": "Agent retried; re-attached",
    "action.started": "Agent started it",
    "action.permit_renewed": "Permit renewed",
    "action.outcome_unknown": "Outcome unknown: no result within the execution lease",
    "action.reconciled": "Reconciled",
    "action.succeeded": "Result: succeeded",
    "action.failed": "Result: failed",
  };
  const PENDING = "pending_approval";

  function relative(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m";
    if (s < 86400) {
      const h = Math.floor(s / 3600);
      const m = Math.floor((s % 3600) / 60);
      return m ? h + "h " + m + "m" : h + "h";
    }
    return Math.floor(s / 86400) + "d";
  }

  function utc(iso) {
    const d = new Date(iso);
    if (isNaN(d.getTime())) return "";
    return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
  }

  function tick() {
    const now = Date.now();
    document.querySelectorAll("time[data-age]").forEach((el) => {
      const t = Date.parse(el.dateTime);
      if (!isNaN(t)) el.textContent = relative((now - t) / 1000) + " ago";
    });
    document.querySelectorAll("time[data-expires]").forEach((el) => {
      const t = Date.parse(el.dateTime);
      if (isNaN(t)) return;
      const left = (t - now) / 1000;
      el.textContent = left > 0 ? relative(left) + " left" : "expiring";
      el.classList.toggle("soon", left < 120);
    });
  }

  function setLiveState(text, offline) {
    const el = document.querySelector("[data-live-state]");
    if (!el) return;
    el.textContent = text;
    el.classList.toggle("offline", Boolean(offline));
  }

  // One EventSource; if the browser gives up (e.g. the server restarted and refused
  // the old connection), open a new one that resumes after the last event seen.
  function live(url, onEvent) {
    let lastSeq = null;
    function open(target) {
      const source = new EventSource(target);
      source.onopen = () => setLiveState("Updates live", false);
      source.onmessage = (msg) => {
        let data;
        try {
          data = JSON.parse(msg.data);
        } catch (err) {
          return;
        }
        if (data.type === "reload") {
          window.location.reload();
          return;
        }
        if (data.type === "logout") {
          window.location.assign("/login");
          return;
        }
        if (typeof data.seq === "number") lastSeq = data.seq;
        onEvent(data);
      };
      source.onerror = () => {
        setLiveState("Reconnecting…", true);
        if (source.readyState === EventSource.CLOSED) {
          window.setTimeout(() => {
            const next = new URL(url, window.location.href);
            if (lastSeq !== null) next.searchParams.set("after", String(lastSeq));
            open(next.toString());
          }, 5000);
        }
      };
    }
    open(url);
  }

  function setStatus(el, status) {
    el.textContent = STATUSES[status] || status;
    el.className = "status status-" + (status in STATUSES ? status : "unknown");
  }

  function setRisk(el, risk) {
    el.textContent = risk || "unknown";
    el.className = "badge risk-" + (RISKS.includes(risk) ? risk : "unknown");
  }

  // -- queue ------------------------------------------------------------------------
  function queuePage(url) {
    const rows = document.getElementById("queue-rows");
    const table = document.getElementById("queue");
    const empty = document.getElementById("queue-empty");
    const countEl = document.getElementById("queue-count");
    const navCount = document.getElementById("nav-count");
    const template = document.getElementById("queue-row-template");
    let count = parseInt(countEl.textContent, 10) || 0;

    function render() {
      countEl.textContent = String(count);
      if (navCount) navCount.textContent = String(count);
      document.title = "(" + count + ") Pending approvals · Faramesh";
      const none = rows.children.length === 0;
      empty.hidden = !none;
      table.classList.toggle("is-empty", none);
    }

    function rowFor(id) {
      for (const row of rows.children) {
        if (row.dataset.id === id) return row;
      }
      return null;
    }

    function setQuorum(row, given, quorum) {
      const el = row.querySelector(".quorum");
      if (!el || !(quorum > 1)) return;
      el.hidden = false;
      el.dataset.quorum = String(quorum);
      el.textContent = given + " of " + quorum + " approvals";
    }

    function buildRow(a) {
      const row = template.content.firstElementChild.cloneNode(true);
      row.dataset.id = a.id;
      const link = row.querySelector(".action-link");
      link.href = "/actions/" + encodeURIComponent(a.id);
      row.querySelector(".tool").textContent = a.tool;
      row.querySelector(".op").textContent = a.operation;
      row.querySelector(".agent").textContent = a.agent_id;
      setRisk(row.querySelector(".badge"), a.risk_level);
      row.querySelector(".reason").textContent = a.reason || "";
      const ageEl = row.querySelector("time[data-age]");
      ageEl.dateTime = a.created_at;
      ageEl.title = utc(a.created_at);
      const approval = a.approval || {};
      if (approval.expires_at) {
        const exp = row.querySelector("time[data-expires]");
        exp.dateTime = approval.expires_at;
        exp.title = utc(approval.expires_at);
        exp.hidden = false;
        row.querySelector(".never").remove();
      }
      setQuorum(row, approval.counted || 0, approval.quorum);
      row.classList.add("flash-new");
      return row;
    }

    live(url, (ev) => {
      const a = ev.action;
      if (!a || !a.id) return;
      const row = rowFor(a.id);
      if (a.status === PENDING) {
        if (!row) {
          rows.insertBefore(buildRow(a), rows.firstChild);
          count += 1;
        } else if (a.approval && typeof a.approval.counted === "number") {
          // The service's count of votes for the current arguments, never a recount here.
          setQuorum(row, a.approval.counted, a.approval.quorum);
        }
      } else if (row) {
        row.remove();
        count = Math.max(0, count - 1);
      }
      render();
      tick();
    });
  }

  // -- action detail ----------------------------------------------------------------
  function actionPage(url) {
    const root = document.getElementById("action");
    const actionId = root.dataset.id;
    const timeline = document.getElementById("timeline");
    const itemTemplate = document.getElementById("timeline-item-template");
    const flash = document.getElementById("flash");

    function addTimeline(seq, entry) {
      if (!entry) return;
      if (seq !== undefined && timeline.querySelector('li[data-seq="' + Number(seq) + '"]')) return;
      const li = itemTemplate.content.firstElementChild.cloneNode(true);
      if (seq !== undefined) li.dataset.seq = String(seq);
      li.querySelector(".ev").textContent = EVENTS[entry.event] || entry.event;
      const when = new Date(entry.at * 1000).toISOString();
      const t = li.querySelector("time");
      t.dateTime = when;
      t.textContent = utc(when);
      li.querySelector(".actor").textContent = entry.actor || "";
      let detail = entry.reason || entry.error || "";
      if (entry.event === "action.approval_recorded" && entry.quorum) {
        detail = (detail ? detail + " · " : "") + entry.approvals + " of " + entry.quorum;
      }
      li.querySelector(".ev-reason").textContent = detail;
      timeline.appendChild(li);
    }

    function announce(text, kind) {
      const p = document.createElement("p");
      p.className = "flash flash-" + (kind || "ok");
      p.textContent = text;
      flash.replaceChildren(p);
    }

    // Keys sorted at every level, as the server's pretty_json shows them.
    function sorted(value) {
      if (Array.isArray(value)) return value.map(sorted);
      if (value && typeof value === "object") {
        const out = {};
        Object.keys(value)
          .sort()
          .forEach((k) => (out[k] = sorted(value[k])));
        return out;
      }
      return value;
    }

    // Another approver approved with edited arguments: show the new ones, and bind the
    // form to them (the server refuses a vote whose hash is not the action's current one).
    function showNewArguments(a, entry) {
      const code = document.getElementById("request-hash");
      if (!a.request_hash || !code || a.request_hash === code.textContent.trim()) return;
      if (!a.params || typeof a.params !== "object") return;
      const paramsEl = document.getElementById("params");
      const before = paramsEl.textContent;
      paramsEl.textContent = JSON.stringify(sorted(a.params), null, 2);
      code.textContent = a.request_hash;
      const input = document.getElementById("shown-hash");
      if (input) input.value = a.request_hash;
      const who = entry && entry.actor ? " by " + entry.actor : "";
      document.getElementById("params-before").textContent = before;
      document.getElementById("params-live-note").textContent =
        "The arguments were edited" + who + ". Params now shows the new arguments (the earlier ones are below); " +
        "votes for the earlier arguments no longer count. Review them before you decide.";
      document.getElementById("params-live-change").hidden = false;
      announce("The arguments of this action changed" + who + ": review the new params before deciding.", "error");
    }

    live(url, (ev) => {
      const a = ev.action;
      if (!a || a.id !== actionId) return;
      addTimeline(ev.seq, ev.entry);
      document.querySelectorAll("[data-status]").forEach((el) => setStatus(el, a.status));
      document.getElementById("decided-by").textContent = a.decided_by || "—";
      const presence = document.getElementById("presence");
      if (presence && a.presence) {
        // Only the changes that a new event can bring: the agent is back, or gone for good.
        if (a.presence.agent_waiting) presence.textContent = "Agent is waiting";
        else if (a.status !== PENDING && a.status !== "approved") presence.textContent = "—";
      }
      document.getElementById("decision-reason").textContent = a.decision_reason || "—";
      showNewArguments(a, ev.entry);
      const given = document.getElementById("quorum-given");
      if (given && a.approval && typeof a.approval.counted === "number") given.textContent = String(a.approval.counted);
      document.title = a.tool + " " + a.operation + " (" + (STATUSES[a.status] || a.status) + ") · Faramesh";
      const form = document.getElementById("decision-form");
      if (a.status !== PENDING && form) {
        const label = (STATUSES[a.status] || a.status).toLowerCase();
        const by = a.decided_by ? " by " + a.decided_by : "";
        form.remove();
        const note = document.getElementById("decision-note");
        note.textContent = "This action was " + label + by + "; it no longer needs a decision.";
        note.hidden = false;
        const exp = document.querySelector("time[data-expires]");
        if (exp) exp.removeAttribute("data-expires");
        announce("This action was " + label + by + ".");
      }
    });
  }

  function decisionForm() {
    const form = document.getElementById("decision-form");
    if (!form) return;
    const reason = document.getElementById("reason");
    const error = document.getElementById("reason-error");
    form.addEventListener("submit", (e) => {
      const button = e.submitter;
      if (button && button.value === "deny" && !reason.value.trim()) {
        e.preventDefault();
        error.hidden = false;
        reason.setAttribute("aria-invalid", "true");
        reason.focus();
        return;
      }
      // Disable after the browser has captured the pressed button's value.
      window.setTimeout(() => form.querySelectorAll("button").forEach((b) => (b.disabled = true)), 0);
    });
    reason.addEventListener("input", () => {
      if (reason.value.trim()) {
        error.hidden = true;
        reason.removeAttribute("aria-invalid");
      }
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    const page = document.body.dataset.page;
    const url = document.body.dataset.events;
    tick();
    window.setInterval(tick, 1000);
    if (page === "queue" && url) queuePage(url);
    if (page === "action" && url) actionPage(url);
    if (page === "action") decisionForm();
  });
})();
