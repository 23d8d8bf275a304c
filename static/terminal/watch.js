// Watching a session: /ws/watch/<session>/ -> xterm.js, read-only (frames: terminal/watch.py).
// Output arrives as bytes and is written into the terminal emulator only, never into the page.
// The socket opens when the person presses Watch (Join, on a moderated session), never on load:
// watching tells the person watched, and on a moderated session it is the join that lets it run.
(function () {
  "use strict";
  // As on the terminal page (terminal.js): xterm.js's own <style> elements get the page's nonce.
  var styleNonce = document.currentScript ? document.currentScript.nonce : "";
  if (styleNonce) {
    var createElement = Document.prototype.createElement;
    Document.prototype.createElement = function (tagName, options) {
      var element = createElement.call(this, tagName, options);
      if (String(tagName).toLowerCase() === "style") { element.nonce = styleNonce; }
      return element;
    };
  }
  var STATES = {
    running: "Live.",
    waiting: "Waiting for an approver to join: the session starts when one watches.",
    paused: "Paused: no approver is watching."
  };
  // Text from the server, shown as text: control characters become spaces, and bidi controls are
  // written as escapes (the server escapes them too), so nothing reorders the line it is on.
  function plain(text) {
    return String(text || "").replace(/[\u0000-\u001f\u007f-\u009f]/g, " ")
      .replace(/[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g, function (c) {
        return "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0");
      });
  }
  // OSC 8 hyperlinks come from the instance (a hostile host could name any site): clicking one opens
  // nothing (xterm.js's default asks, then opens it). The text stays on the screen to copy.
  var INERT_LINKS = { activate: function () { /* opens nothing */ }, allowNonHttpProtocols: false };
  function start() {
    var box = document.getElementById("terminal");
    var status = document.getElementById("terminal-status");
    var watching = document.getElementById("watch-watching");
    var join = document.getElementById("watch-join");
    if (!box || !window.Terminal || !join) { return; }
    join.addEventListener("click", function () {
      join.remove();
      status.textContent = "Connecting…";
      watch(box, status, watching);
    }, { once: true });
  }
  function watch(box, status, watching) {
    var term = new window.Terminal({
      disableStdin: true, cursorBlink: false, convertEol: false, scrollback: 5000, linkHandler: INERT_LINKS
    });
    term.open(box);
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + window.location.host + box.dataset.wsPath);
    socket.binaryType = "arraybuffer";
    var closed = false;
    function size(cols, rows) {
      var c = parseInt(cols, 10), r = parseInt(rows, 10);
      if (c > 0 && r > 0 && c <= 1000 && r <= 500) { term.resize(c, r); }
    }
    socket.onmessage = function (event) {
      if (typeof event.data !== "string") {
        term.write(new Uint8Array(event.data));
        return;
      }
      var message = JSON.parse(event.data);
      if (!message || message.v !== 1) { return; }
      if (message.type === "reset") {
        term.reset();
        size(message.cols, message.rows);
        if (message.resync) {
          term.write("\x1b[30;43m Passport \x1b[0m \x1b[1;33mYou missed some output; resynchronised.\x1b[0m\r\n");
        }
      } else if (message.type === "mark") {
        // Flow control (terminal/watch.py): once the terminal has taken in everything before this
        // mark, say so; the server stops sending to a page that does not.
        var id = String(message.id || "");
        term.write("", function () {
          if (socket.readyState === WebSocket.OPEN) { socket.send(JSON.stringify({ v: 1, type: "ack", id: id })); }
        });
      } else if (message.type === "resize") {
        size(message.cols, message.rows);
      } else if (message.type === "state") {
        status.textContent = STATES[message.state] || "Live.";
        var names = (message.watching || []).map(plain);
        watching.textContent = names.length ? "Watching: " + names.join(", ") : "";
      } else if (message.type === "closed") {
        closed = true;
        status.textContent = plain(message.reason);
        status.classList.add("closed");
      }
    };
    socket.onclose = function () {
      if (!closed) {
        status.textContent = "Disconnected. Reload the page to watch again.";
        status.classList.add("closed");
      }
    };
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();
