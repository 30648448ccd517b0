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

  // The kinds of event pages follow.
  const FOLLOWED = ["node_role.updated", "node.updated", "node_role.deleted", "node.created",
    "node.deleted", "run.finished", "deployment.committed", "deployment.proposed",
    "deployment.updated", "node.power", "node.power_changed"];

  // Calls handle(type, id, data) for each followed event after `after`, and handle("gap")
  // when some were lost. Every crowbar page of this browser shares one stream through a
  // SharedWorker (assets/events-worker.js): over HTTP/1.1 a browser opens at most six
  // connections to a server, and six pages with a stream each would leave none for
  // anything else. Without SharedWorker, the page opens a stream of its own.
  function subscribe(after, handle) {
    if (window.SharedWorker) {
      const worker = new SharedWorker("/assets/events-worker.js", { name: "crowbar-events" });
      worker.port.onmessage = function (message) {
        const m = message.data;
        if (m.kind === "open") live.connected = true;
        else if (m.kind === "closed") live.connected = false;
        else if (m.kind === "gap") handle("gap");
        // the shared stream may have started earlier than this page was rendered
        else if (!(m.id <= Number(after || 0))) handle(m.type, m.id, m.data);
      };
      worker.port.start();
      worker.port.postMessage({ after: after, types: FOLLOWED });
      window.addEventListener("pagehide", function () { worker.port.postMessage({ bye: true }); });
      // a page restored from the back/forward cache said goodbye: read it afresh
      window.addEventListener("pageshow", function (event) { if (event.persisted) location.reload(); });
      return;
    }
    if (!window.EventSource) return;
    const source = new EventSource("/api/v2/events" + (after ? "?last_event_id=" + encodeURIComponent(after) : ""));
    source.onopen = function () { live.connected = true; };
    FOLLOWED.forEach(function (type) {
      source.addEventListener(type, function (event) { handle(type, Number(event.lastEventId), event.data); });
    });
    window.addEventListener("beforeunload", function () { source.close(); });
  }

  // ---- live fragments ------------------------------------------------------------------
  // A fragment with data-live-src reloads from there when events of a kind it follows
  // arrive (data-follows: "changed" — any event; "grid" — bindings, deployments and nodes;
  // "deployment" — commits and proposals). One request at a time per fragment, at most one
  // every 500 ms while events keep coming, and always one more after the last event, so a
  // fragment never stays behind the final state. (htmx's own triggers queue a request behind
  // the one in flight on the element that request's outerHTML swap then removes: the last
  // reload could be lost.) A grid reload waits for a drag in progress to end.
  const fragments = {};
  function pump(id) {
    const f = fragments[id];
    if (f.busy || f.timer || !f.dirty) return;
    const wait = f.last + 500 - Date.now();
    if (wait > 0 || (id === "grid-root" && dragging)) {
      f.timer = setTimeout(function () { f.timer = null; pump(id); }, Math.max(wait, 200));
      return;
    }
    const el = document.getElementById(id);
    if (!el) { f.dirty = false; return; }
    f.dirty = false;
    f.busy = true;
    f.last = Date.now();
    const done = function () { f.busy = false; pump(id); };
    htmx.ajax("GET", el.dataset.liveSrc, { source: el, target: el, swap: el.dataset.liveSwap || "outerHTML" })
      .then(done, done);
  }
  function reload(kind) {
    document.querySelectorAll("[data-live-src]").forEach(function (el) {
      if (!el.id || !(el.dataset.follows || "").split(" ").includes(kind)) return;
      const f = fragments[el.id] || (fragments[el.id] = { busy: false, dirty: false, timer: null, last: 0 });
      f.dirty = true;
      pump(el.id);
    });
  }

  function follow() {
    if (!document.body.dataset.live) return;
    const changed = function () { reload("changed"); };
    const gridChanged = function () { reload("grid"); };
    const deploymentChanged = function () { reload("deployment"); };
    const grid = function () { return document.getElementById("grid-root"); };
    // from the last event before the page read its data: nothing in between is missed
    subscribe(document.body.dataset.eventsAfter, function (type, id, text) {
      const data = text ? JSON.parse(text) : {};
      switch (type) {
        case "gap": // events were lost: every fragment reads the present again
          changed(); gridChanged(); deploymentChanged();
          break;
        case "node_role.updated": {
          const state = STATES[String(data.state)];
          if (state) { setState(data.id, state, id); live.applied++; }
          changed();
          // a noderole of this deployment the grid does not show: bound elsewhere
          const root = grid();
          if (root && data.event && String(data.event.deployment_id) === root.dataset.deploymentId &&
              !root.querySelector('[data-nr="' + data.id + '"]')) gridChanged();
          break;
        }
        case "node.updated":
          setNode(data);
          live.applied++;
          changed();
          // a node moved in or out of a deployment
          if (data.changes && data.changes.deployment) gridChanged();
          break;
        case "node_role.deleted": case "node.created": case "node.deleted":
          changed(); gridChanged();
          break;
        case "run.finished": case "node.power": case "node.power_changed":
          changed();
          break;
        default: // deployment.*: what a deployment's history shows (snapshots, audit) changes only with these
          changed(); gridChanged(); deploymentChanged();
      }
    });
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
  let dragging = false;
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
        onStart: function () { dragging = true; },
        onEnd: function () { dragging = false; },
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
  // A fragment reloaded by events replaces its elements: the focused control, the checked
  // boxes and the values chosen or typed but not sent are carried over to the new ones (by
  // id, label or name and value). Kept per fragment: several reload at once, and one's swap
  // must not drop what another keeps.
  const kept = {};
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
    // what the admin chose or typed and has not sent yet
    const values = [...target.querySelectorAll("select, input[type=text], input:not([type])")]
      .filter(function (el) { return el.id; })
      .map(function (el) { return [el.id, el.value]; });
    kept[target.id] = { focused: focused, checked: checked, values: values };
  });
  function restore(root) {
    // a reloaded grid keeps the role or node picked with the keyboard
    if (picked && root.id === "grid-root") {
      const again = root.querySelector('.chip[data-kind="' + picked.dataset.kind + '"][data-value="' + CSS.escape(picked.dataset.value) + '"]');
      if (again) { again.setAttribute("aria-pressed", "true"); picked = again; }
    }
    const was = root.id && kept[root.id];
    if (!was) return;
    delete kept[root.id];
    was.values.forEach(function (pair) {
      const el = root.querySelector("#" + CSS.escape(pair[0]));
      if (!el || el.value === pair[1]) return;
      if (el.tagName === "SELECT" && ![...el.options].some(function (o) { return o.value === pair[1]; })) return;
      el.value = pair[1];
    });
    was.checked.forEach(function (key) {
      const box = root.querySelector(key);
      if (box) box.checked = true;
    });
    if (was.focused) {
      const el = root.querySelector(was.focused);
      if (el) el.focus();
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    // restored as the new elements go in, not when htmx settles them 20 ms later: a
    // choice read (or sent) in between would be the default
    document.body.addEventListener("htmx:afterSwap", function (event) { restore(event.target); });
    htmx.onLoad(function (root) { sortables(root); reapply(root); });
    follow();
  });
})();
