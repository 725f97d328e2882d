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
    "action.reminder": "Reminder sent",
    "action.escalated": "Escalated",
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
    document.querySelectorAll("[data-seen-at]").forEach((el) => {
      const t = Date.parse(el.dataset.seenAt);
      if (!isNaN(t)) el.textContent = "agent stopped waiting " + relative((now - t) / 1000) + " ago";
    });
  }

  // "agent is waiting" / "agent stopped waiting 12m ago", from the action's presence when
  // the server sends one; nothing when it does not.
  function setPresence(el, presence) {
    if (!el) return;
    delete el.dataset.seenAt;
    if (!presence || typeof presence !== "object") {
      el.hidden = true;
      return;
    }
    if (presence.agent_waiting) {
      el.textContent = "agent is waiting";
      el.hidden = false;
    } else if (presence.agent_seen_at) {
      el.dataset.seenAt = presence.agent_seen_at;
      el.textContent = "agent stopped waiting";
      el.hidden = false;
    } else {
      el.hidden = true;
    }
  }

  // Ask before a decision; <dialog> where the browser has it, else the built-in confirm.
  function confirmWith(text, yesLabel) {
    const dialog = document.getElementById("confirm-dialog");
    if (!dialog || typeof dialog.showModal !== "function") return Promise.resolve(window.confirm(text));
    document.getElementById("confirm-text").textContent = text;
    document.getElementById("confirm-yes").textContent = yesLabel;
    dialog.returnValue = "";
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "yes"), { once: true });
      dialog.showModal();
      document.getElementById("confirm-yes").focus();
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
    const bulkForm = document.getElementById("bulk-form");
    const empty = document.getElementById("queue-empty");
    const countEl = document.getElementById("queue-count");
    const navCount = document.getElementById("nav-count");
    const template = document.getElementById("queue-row-template");
    const filters = table.dataset;
    let count = parseInt(countEl.textContent, 10) || 0;

    function render() {
      countEl.textContent = String(count);
      if (navCount) navCount.textContent = String(count);
      document.title = "(" + count + ") Pending approvals · Faramesh";
      const none = rows.children.length === 0;
      empty.hidden = !none;
      table.classList.toggle("is-empty", none);
      bulkForm.classList.toggle("is-empty", none);
      updateSelection();
    }

    function rowFor(id) {
      for (const row of rows.children) {
        if (row.dataset.id === id) return row;
      }
      return null;
    }

    // A live row joins the list only if it fits the filters the page was loaded with.
    function fits(a) {
      if (filters.filterTool && a.tool !== filters.filterTool) return false;
      if (filters.filterAgent && a.agent_id !== filters.filterAgent) return false;
      if (filters.filterRisk && a.risk_level !== filters.filterRisk) return false;
      return true;
    }

    function setQuorum(row, given, quorum) {
      const el = row.querySelector(".quorum");
      if (!el || !(quorum > 1)) return;
      el.hidden = false;
      el.dataset.quorum = String(quorum);
      el.textContent = given + " of " + quorum + " approvals";
    }

    function clipped(el, text) {
      el.textContent = text;
      el.title = text;
    }

    function setArgs(cell, args) {
      const box = cell.querySelector(".clip");
      box.replaceChildren();
      const list = Array.isArray(args) ? args : [];
      box.title = list.map((x) => x[0] + " " + x[2]).join(" · ");
      list.forEach((x, i) => {
        if (i) {
          const sep = document.createElement("span");
          sep.className = "sep";
          sep.textContent = " · ";
          box.appendChild(sep);
        }
        const arg = document.createElement("span");
        arg.className = "arg";
        const name = document.createElement("span");
        name.className = "arg-name";
        name.textContent = String(x[0]);
        const value = document.createElement("span");
        value.className = "arg-value";
        value.textContent = String(x[1]);
        arg.append(name, " ", value);
        box.appendChild(arg);
      });
    }

    function buildRow(a) {
      const row = template.content.firstElementChild.cloneNode(true);
      row.dataset.id = a.id;
      row.dataset.risk = a.risk_level || "";
      const pick = row.querySelector('input[name="pick"]');
      pick.value = a.id + ":" + a.request_hash;
      pick.setAttribute("aria-label", "Select " + a.tool + " " + a.operation + " " + String(a.id).slice(0, 8));
      const link = row.querySelector(".action-link");
      link.href = "/actions/" + encodeURIComponent(a.id);
      link.title = a.tool + " " + a.operation;
      row.querySelector(".tool").textContent = a.tool;
      row.querySelector(".op").textContent = a.operation;
      setArgs(row.querySelector(".args"), a.args);
      clipped(row.querySelector(".agent-id"), a.agent_id);
      setPresence(row.querySelector(".presence"), a.presence);
      setRisk(row.querySelector(".badge"), a.risk_level);
      clipped(row.querySelector(".reason-text"), a.reason || "");
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

    // -- selecting rows and deciding them together --
    const pickAll = document.getElementById("pick-all");
    const bulkCount = document.getElementById("bulk-count");
    const bulkReason = document.getElementById("bulk-reason");
    let confirmed = false;

    function picked() {
      return Array.from(rows.querySelectorAll('input[name="pick"]:checked'));
    }

    function updateSelection() {
      const n = picked().length;
      const all = rows.querySelectorAll('input[name="pick"]').length;
      bulkCount.textContent = n ? n + " selected" : "None selected";
      pickAll.checked = all > 0 && n === all;
      pickAll.indeterminate = n > 0 && n < all;
    }

    pickAll.addEventListener("change", () => {
      rows.querySelectorAll('input[name="pick"]').forEach((box) => (box.checked = pickAll.checked));
      updateSelection();
    });
    rows.addEventListener("change", updateSelection);

    bulkForm.addEventListener("submit", (e) => {
      if (confirmed) return;
      e.preventDefault();
      const button = e.submitter;
      const n = picked().length;
      if (!n) {
        bulkCount.textContent = "Select the actions to decide first";
        return;
      }
      const deny = button && button.value === "deny";
      if (deny && !bulkReason.value.trim()) {
        bulkReason.setAttribute("aria-invalid", "true");
        bulkReason.placeholder = "A reason is required to deny";
        bulkReason.focus();
        return;
      }
      const what = n === 1 ? "the selected action" : "the " + n + " selected actions";
      confirmWith((deny ? "Deny " : "Approve ") + what + "?", deny ? "Yes, deny" : "Yes, approve").then((ok) => {
        if (!ok) return;
        confirmed = true;
        bulkForm.requestSubmit(button);
      });
    });

    live(url, (ev) => {
      const a = ev.action;
      if (!a || !a.id) return;
      const row = rowFor(a.id);
      if (a.status === PENDING) {
        if (!row && fits(a)) {
          const built = buildRow(a);
          if (!filters.sort || filters.sort === "newest") rows.insertBefore(built, rows.firstChild);
          else rows.appendChild(built);
          count += 1;
        } else if (!row) {
          count += 1; // waiting, but filtered out of this view
        } else {
          if (a.approval && typeof a.approval.counted === "number") {
            // The service's count of votes for the current arguments, never a recount here.
            setQuorum(row, a.approval.counted, a.approval.quorum);
          }
          // The row's checkbox stays bound to the arguments it showed: a vote for it after
          // an edit is refused by the server and reported. Say so on the row now.
          const box = row.querySelector('input[name="pick"]');
          if (a.request_hash && box && !box.value.endsWith(":" + a.request_hash) && !row.querySelector(".changed-note")) {
            const note = document.createElement("span");
            note.className = "changed-note";
            note.textContent = "arguments changed since this page loaded: open it to review";
            row.querySelector(".args").appendChild(note);
            row.classList.add("changed");
          }
          if (a.presence) setPresence(row.querySelector(".presence"), a.presence);
        }
      } else if (row) {
        row.remove();
        count = Math.max(0, count - 1);
      }
      render();
      tick();
    });
    updateSelection();
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
        document.querySelectorAll(".pending-only").forEach((el) => el.remove());
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
    shortcuts(form, reason, error);
  }

  // a approves, d denies; each asks to confirm first. Keys typed into a field are text.
  function shortcuts(form, reason, error) {
    const approve = form.querySelector('button[value="approve"]');
    const deny = form.querySelector('button[value="deny"]');
    const title = document.querySelector("h1").textContent.trim();
    let open = false;
    document.addEventListener("keydown", (e) => {
      if (open || e.defaultPrevented || e.ctrlKey || e.metaKey || e.altKey || e.repeat) return;
      const target = e.target;
      if (target instanceof Element && target.closest("input, textarea, select, [contenteditable], dialog")) return;
      if (!document.body.contains(form)) return; // decided meanwhile
      const key = e.key.toLowerCase();
      if (key !== "a" && key !== "d") return;
      e.preventDefault();
      if (key === "d" && !reason.value.trim()) {
        error.hidden = false;
        reason.setAttribute("aria-invalid", "true");
        reason.focus();
        return;
      }
      const question =
        key === "a" ? "Approve " + title + "?" : "Deny " + title + "? Reason: " + reason.value.trim();
      open = true;
      confirmWith(question, key === "a" ? "Yes, approve" : "Yes, deny").then((ok) => {
        open = false;
        if (ok && document.body.contains(form)) form.requestSubmit(key === "a" ? approve : deny);
      });
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
