// crowbar web UI: live states from the event stream, drag-and-drop binding with a keyboard
// alternative, and the notice area for failed actions. No build step: plain browser JS.
(function () {
  "use strict";

  const STATES = { "-1": "error", "0": "active", "1": "todo", "2": "transition", "3": "blocked", "4": "proposed" };
  // What tests and curious admins can read: how many events changed the page.
  const live = (window.crowbarLive = { applied: 0, connected: false });

  function announce(text) {
    const region = document.getElementById("announce");
    if (region) region.textContent = text;
  }

  function notice(text) {
    const box = document.getElementById("notice");
    if (!box) return;
    box.textContent = text;
    box.hidden = !text;
  }

  // ---- failed actions: show the server's message -------------------------------------
  document.addEventListener("htmx:responseError", function (event) {
    const xhr = event.detail.xhr;
    let message = xhr.status + " " + xhr.statusText;
    try {
      const doc = new DOMParser().parseFromString(xhr.responseText, "text/html");
      const found = doc.querySelector(".error-message");
      if (found) message = found.textContent.trim();
    } catch (e) { /* keep the status line */ }
    notice(message);
  });
  document.addEventListener("htmx:beforeRequest", function () { notice(""); });

  // ---- live states ---------------------------------------------------------------------
  // The newest state each noderole is known to have, with the event that said so: a
  // fragment rendered before that event (an htmx swap racing the stream) gets it again.
  const latest = {};

  function setState(id, state, seq, root) {
    if (seq !== undefined) latest[id] = { state: state, seq: seq };
    (root || document).querySelectorAll('[data-nr="' + id + '"]').forEach(function (el) {
      el.classList.forEach(function (c) { if (c.startsWith("state-")) el.classList.remove(c); });
      el.classList.add("state-" + state);
      const label = el.querySelector(".state");
      if (label) label.textContent = state.toUpperCase();
      if (state !== "proposed") {
        const unbind = el.querySelector(".unbind");
        if (unbind) unbind.remove();
      }
    });
  }

  function setNode(data) {
    document.querySelectorAll('[data-node-id="' + data.id + '"]').forEach(function (row) {
      const changes = data.changes || {};
      if (changes.alive) row.dataset.alive = String(changes.alive.to);
      if (typeof data.available === "boolean") row.dataset.available = String(data.available);
      const alive = row.dataset.alive === "true", available = row.dataset.available === "true";
      const condition = alive ? (available ? "alive-available" : "alive-reserved") : (available ? "dead" : "dead-reserved");
      const text = alive ? (available ? "alive, available" : "alive, reserved") : (available ? "dead" : "dead, reserved");
      const badge = row.querySelector(".condition");
      if (badge) { badge.className = "condition cond-" + condition; badge.textContent = text; }
    });
  }

  function reapply(root) {
    const rendered = Number((root.closest && root.closest("[data-events-after]") || document.body).dataset.eventsAfter || 0);
    Object.keys(latest).forEach(function (id) {
      if (latest[id].seq > rendered) setState(id, latest[id].state, undefined, root);
    });
  }

  function follow() {
    const page = document.body.dataset.live;
    if (!page || !window.EventSource) return;
    // from the last event before the page read its data: nothing in between is missed
    const after = document.body.dataset.eventsAfter;
    const source = new EventSource("/api/v2/events" + (after ? "?last_event_id=" + encodeURIComponent(after) : ""));
    source.onopen = function () { live.connected = true; };
    // `crowbar-changed` tells fragments (state badge, annealer lists) to refresh: at most
    // every 500 ms while events keep coming, and always once more after the last one, so a
    // fragment never stays behind the final state.
    let changePending = false;
    let changeTimer = null;
    const fireChanged = function () {
      document.body.dispatchEvent(new CustomEvent("crowbar-changed"));
      changePending = false;
      changeTimer = setTimeout(function () {
        changeTimer = null;
        if (changePending) { fireChanged(); }
      }, 500);
    };
    const changed = function () {
      changePending = true;
      if (changeTimer === null) { fireChanged(); }
    };
    source.addEventListener("node_role.updated", function (event) {
      const data = JSON.parse(event.data);
      const state = STATES[String(data.state)];
      if (state) { setState(data.id, state, Number(event.lastEventId)); live.applied++; }
      changed();
    });
    source.addEventListener("node.updated", function (event) {
      setNode(JSON.parse(event.data));
      live.applied++;
      changed();
    });
    ["node_role.deleted", "run.finished", "node.created", "node.deleted"].forEach(function (type) {
      source.addEventListener(type, changed);
    });
    // what a deployment's history shows (snapshots, audit) changes only with these
    ["deployment.committed", "deployment.proposed", "deployment.updated"].forEach(function (type) {
      source.addEventListener(type, function () {
        changed();
        document.body.dispatchEvent(new CustomEvent("crowbar-deployment-changed"));
      });
    });
    window.addEventListener("beforeunload", function () { source.close(); });
  }

  // ---- binding: drag and drop, or pick with Enter and drop with Enter ------------------
  function bind(node, role) {
    const root = document.getElementById("grid-root");
    if (!root || !node || !role) return;
    announce("Binding " + role + " to " + node);
    htmx.ajax("POST", "/deployments/" + encodeURIComponent(root.dataset.deployment) + "/bind", {
      target: "#grid-root", swap: "outerHTML",
      // the CSRF header comes from the body's hx-headers, like every htmx request's
      values: { node: node, role: role },
    });
  }

  // A drop onto a row header binds the dropped role to that node; onto a column header,
  // the dropped node to that role.
  function dropped(target, item) {
    item.remove();
    if (target.dataset.accept === "role") bind(target.dataset.node, item.dataset.value);
    else bind(item.dataset.value, target.dataset.role);
  }

  let picked = null;
  function pick(chip) {
    document.querySelectorAll(".chip[aria-pressed=true]").forEach(function (c) { c.setAttribute("aria-pressed", "false"); });
    if (picked === chip) { picked = null; announce("Nothing picked"); return; }
    picked = chip;
    chip.setAttribute("aria-pressed", "true");
    const other = chip.dataset.kind === "role" ? "node row" : "role column";
    announce("Picked " + chip.dataset.kind + " " + chip.dataset.value + ". Move to a " + other + " header and press Enter.");
  }

  document.addEventListener("click", function (event) {
    const chip = event.target.closest(".chip");
    if (chip) pick(chip);
  });
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && picked) { picked.setAttribute("aria-pressed", "false"); picked = null; announce("Nothing picked"); return; }
    if (event.key !== "Enter" && event.key !== " ") return;
    const target = event.target.closest(".drop");
    if (!target || event.target.tagName === "A" && event.key === "Enter" && !picked) return;
    if (!picked) { announce("Pick a role or a node first"); return; }
    if (picked.dataset.kind !== target.dataset.accept) {
      announce("A " + picked.dataset.kind + " goes onto a " + (picked.dataset.kind === "role" ? "node row" : "role column"));
      return;
    }
    event.preventDefault();
    const chip = picked;
    picked = null;
    if (target.dataset.accept === "role") bind(target.dataset.node, chip.dataset.value);
    else bind(chip.dataset.value, target.dataset.role);
  });

  function sortables(root) {
    if (!window.Sortable) return;
    root.querySelectorAll(".palette").forEach(function (palette) {
      Sortable.create(palette, {
        group: { name: palette.dataset.kind, pull: "clone", put: false },
        sort: false, forceFallback: true, fallbackOnBody: true, draggable: ".chip",
      });
    });
    root.querySelectorAll(".drop").forEach(function (target) {
      Sortable.create(target, {
        group: { name: "target-" + target.dataset.accept, pull: false, put: [target.dataset.accept] },
        sort: false, forceFallback: true, draggable: ".chip",
        onAdd: function (event) { dropped(target, event.item); },
      });
    });
  }

  // ---- live fragments keep what the admin was doing ----------------------------------
  // A fragment reloaded by events replaces its elements: the focused control and the
  // checked boxes are found again in the new ones (by id, label or name and value).
  let kept = null;
  function keyOf(el) {
    if (el.id) return "#" + CSS.escape(el.id);
    const label = el.getAttribute("aria-label");
    if (label) return el.tagName.toLowerCase() + '[aria-label="' + CSS.escape(label) + '"]';
    if (el.name) return el.tagName.toLowerCase() + '[name="' + CSS.escape(el.name) + '"][value="' + CSS.escape(el.value) + '"]';
    return null;
  }
  document.addEventListener("htmx:beforeSwap", function (event) {
    const target = event.detail.target;
    if (!target || !target.id) return;
    const focused = target.contains(document.activeElement) ? keyOf(document.activeElement) : null;
    const checked = [...target.querySelectorAll("input[type=checkbox]:checked")].map(keyOf).filter(Boolean);
    kept = { id: target.id, focused: focused, checked: checked };
  });
  function restore(root) {
    if (!kept || root.id !== kept.id) return;
    kept.checked.forEach(function (key) {
      const box = root.querySelector(key);
      if (box) box.checked = true;
    });
    if (kept.focused) {
      const el = root.querySelector(kept.focused);
      if (el) el.focus();
    }
    kept = null;
  }

  document.addEventListener("DOMContentLoaded", function () {
    htmx.onLoad(function (root) { restore(root); sortables(root); reapply(root); });
    follow();
  });
})();
