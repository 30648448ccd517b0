// crowbar's event stream, shared by every crowbar page open in this browser (see subscribe()
// in ui.js): one connection to the server instead of one per page. Each page says from which
// event on it needs the stream; the worker replays what it kept since then and passes on
// what comes, and tells a page whose events it no longer has that it missed some.
"use strict";

// Events kept for pages that join later (a page joins within moments of being rendered).
const KEEP = 5000;
const ports = new Set();
const recent = []; // {kind: "event", type, id, data}, oldest first
let source = null;
let from = 0; // the stream started after this event: pages wanting older ones missed some
let dropped = 0; // the newest event no longer kept
let open = false;

function send(port, message) {
  try {
    port.postMessage(message);
  } catch (e) {
    ports.delete(port);
  }
}

function broadcast(message) {
  ports.forEach(function (port) { send(port, message); });
}

function start(after, types) {
  from = after;
  source = new EventSource("/api/v2/events" + (after ? "?last_event_id=" + encodeURIComponent(after) : ""));
  source.onopen = function () { open = true; broadcast({ kind: "open" }); };
  // EventSource reconnects by itself, from the last event it saw
  source.onerror = function () { open = false; broadcast({ kind: "closed" }); };
  types.forEach(function (type) {
    source.addEventListener(type, function (event) {
      const message = { kind: "event", type: type, id: Number(event.lastEventId), data: event.data };
      recent.push(message);
      if (recent.length > KEEP) dropped = recent.shift().id;
      broadcast(message);
    });
  });
}

self.onconnect = function (event) {
  const port = event.ports[0];
  port.onmessage = function (message) {
    if (message.data.bye) {
      ports.delete(port);
      return;
    }
    const after = Number(message.data.after || 0);
    if (!source) {
      start(after, message.data.types || []);
    } else {
      if (after < from || after < dropped) send(port, { kind: "gap" });
      recent.forEach(function (m) { if (m.id > after) send(port, m); });
      if (open) send(port, { kind: "open" });
    }
    ports.add(port);
  };
  port.start();
};
