// The browser terminal: xterm.js <-> /ws/terminal/<grant>/ (frames: versioned envelopes, terminal/frames.py).
(function () {
  "use strict";
  // xterm.js styles its rows with <style> elements it creates. The page's Content-Security-Policy
  // admits inline <style> only with the page's nonce, given to this script's tag: each <style> made
  // on this page gets it. (Read now: document.currentScript is only set while this file runs.)
  var styleNonce = document.currentScript ? document.currentScript.nonce : "";
  if (styleNonce) {
    var createElement = Document.prototype.createElement;
    Document.prototype.createElement = function (tagName, options) {
      var element = createElement.call(this, tagName, options);
      if (String(tagName).toLowerCase() === "style") { element.nonce = styleNonce; }
      return element;
    };
  }
  // Text from the server, shown as text: control characters become spaces, and bidi controls are
  // written as escapes (the server escapes them too), so nothing reorders the line it is on.
  function plain(text) {
    return String(text || "").replace(/[\u0000-\u001f\u007f-\u009f]/g, " ")
      .replace(/[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g, function (c) {
        return "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0");
      });
  }
  function start() {
    var box = document.getElementById("terminal");
    var status = document.getElementById("terminal-status");
    var endsLine = document.getElementById("terminal-ends");
    var notice = document.getElementById("terminal-notice");
    var frameBox = document.getElementById("terminal-frame");
    var fullscreenButton = document.getElementById("terminal-fullscreen");
    if (!box || !window.Terminal) { return; }
    var term = new window.Terminal({ cursorBlink: true, convertEol: false, scrollback: 5000 });
    var fit = new window.FitAddon.FitAddon();
    term.loadAddon(fit);
    term.open(box);
    fit.fit();
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var url = scheme + window.location.host + box.dataset.wsPath + "?ticket=" + encodeURIComponent(box.dataset.ticket);
    var socket = new WebSocket(url);
    socket.binaryType = "arraybuffer";
    var closedReason = null;
    var VERSION = 1;
    // The server refuses a frame past 64 KiB (terminal/frames.py): a long paste goes in pieces.
    var INPUT_PIECE = 4096;

    function sendFrame(type, fields) {
      if (socket.readyState !== WebSocket.OPEN) { return; }
      var frame = { v: VERSION, type: type };
      Object.keys(fields || {}).forEach(function (name) { frame[name] = fields[name]; });
      socket.send(JSON.stringify(frame));
    }
    function sendResize() { sendFrame("resize", { cols: term.cols, rows: term.rows }); }
    function sendInput(data) {
      var start = 0;
      while (start < data.length) {
        var end = Math.min(start + INPUT_PIECE, data.length);
        // Never split a surrogate pair between two pieces.
        var last = data.charCodeAt(end - 1);
        if (end < data.length && last >= 0xd800 && last <= 0xdbff) { end += 1; }
        sendFrame("input", { data: data.slice(start, end) });
        start = end;
      }
    }
    socket.onopen = function () { sendResize(); };
    socket.onmessage = function (event) {
      if (typeof event.data !== "string") {
        term.write(new Uint8Array(event.data));
        return;
      }
      var message = JSON.parse(event.data);
      if (!message || message.v !== VERSION) { return; }
      if (message.type === "status") {
        status.textContent = plain(message.message);
      } else if (message.type === "ready") {
        status.textContent = "Connected.";
        sendResize();
        term.focus();
      } else if (message.type === "ends") {
        showEnds(message.at);
      } else if (message.type === "notice") {
        showNotice(message.message, message.at);
      } else if (message.type === "mark") {
        // Flow control (terminal/flow.py): once the terminal has written everything before this
        // mark, say so; past a limit the server stops reading the shell's output until the page does.
        var id = String(message.id || "");
        term.write("", function () { sendFrame("ack", { id: id }); });
      } else if (message.type === "closed") {
        closedReason = plain(message.reason) || "Closed.";
        status.textContent = closedReason;
        status.classList.add("closed");
      }
    };
    // The request's end time, as the server read it (again after an extension): "YYYY-MM-DD HH:MM:SS".
    var noticeFor = null;
    function showEnds(at) {
      var when = new Date(String(at));
      if (!endsLine || isNaN(when.getTime())) { return; }
      endsLine.textContent = when.toISOString().slice(0, 19).replace("T", " ");
      // Extended past the end the banner warned of: the warning no longer holds.
      if (notice && noticeFor !== null && when.getTime() > noticeFor) { notice.hidden = true; }
    }
    // A warning from the portal (terminal/expiry.py): above the terminal and as a line inside it,
    // written to the screen only; the shell never receives it. Control characters are dropped (plain).
    function showNotice(text, at) {
      var clean = plain(text);
      if (!clean) { return; }
      if (notice) {
        notice.textContent = clean;
        notice.hidden = false;
        var when = new Date(String(at));
        noticeFor = isNaN(when.getTime()) ? null : when.getTime();
      }
      term.write("\r\n\x1b[30;43m Passport \x1b[0m \x1b[1;33m" + clean + "\x1b[0m\r\n");
    }
    socket.onclose = function () {
      if (!closedReason) {
        status.textContent = "Disconnected. Reload the page to open a new terminal.";
        status.classList.add("closed");
      }
      term.options.disableStdin = true;
    };
    // Keystrokes and paste both arrive here.
    term.onData(sendInput);
    term.onResize(sendResize);
    // The terminal takes the room it has: refit whenever its box changes size (window, full screen).
    var refitPending = false;
    function refit() {
      if (refitPending) { return; }
      refitPending = true;
      window.requestAnimationFrame(function () {
        refitPending = false;
        if (box.clientWidth > 0 && box.clientHeight > 0) { fit.fit(); }
      });
    }
    window.addEventListener("resize", refit);
    if (window.ResizeObserver) { new window.ResizeObserver(refit).observe(box); }
    // Full screen (Esc, the browser's own key, leaves it).
    if (fullscreenButton && frameBox && frameBox.requestFullscreen) {
      fullscreenButton.hidden = false;
      fullscreenButton.addEventListener("click", function () {
        if (document.fullscreenElement) {
          document.exitFullscreen();
        } else {
          frameBox.requestFullscreen().catch(function () { /* refused: stay as we are */ });
        }
      });
      document.addEventListener("fullscreenchange", function () {
        var on = document.fullscreenElement === frameBox;
        fullscreenButton.textContent = on ? "Leave full screen" : "Full screen";
        fullscreenButton.setAttribute("aria-pressed", on ? "true" : "false");
        refit();
        term.focus();
      });
    }
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();
