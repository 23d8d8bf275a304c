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
  function start() {
    var box = document.getElementById("terminal");
    var status = document.getElementById("terminal-status");
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
        status.textContent = message.message;
      } else if (message.type === "ready") {
        status.textContent = "Connected.";
        sendResize();
        term.focus();
      } else if (message.type === "closed") {
        closedReason = message.reason;
        status.textContent = message.reason;
        status.classList.add("closed");
      }
    };
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
    window.addEventListener("resize", function () { fit.fit(); });
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();
