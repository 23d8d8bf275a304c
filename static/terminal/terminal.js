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
  // OSC 8 hyperlinks come from the instance (a hostile host could name any site): clicking one opens
  // nothing (xterm.js's default asks, then opens it). The text stays on the screen to copy.
  var INERT_LINKS = { activate: function () { /* opens nothing */ }, allowNonHttpProtocols: false };
  function start() {
    var box = document.getElementById("terminal");
    var status = document.getElementById("terminal-status");
    var endsLine = document.getElementById("terminal-ends");
    var notice = document.getElementById("terminal-notice");
    var frameBox = document.getElementById("terminal-frame");
    var fullscreenButton = document.getElementById("terminal-fullscreen");
    if (!box || !window.Terminal) { return; }
    var term = new window.Terminal({ cursorBlink: true, convertEol: false, scrollback: 5000, linkHandler: INERT_LINKS });
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
    // Input flow control (terminal/flow.py): at most INPUT_WINDOW bytes (UTF-8, as the server counts
    // them) sent and not yet "taken" by the server; the rest of a paste waits here until the instance
    // reads what came before it. Sending more would get the terminal closed.
    var INPUT_WINDOW = 1024 * 1024;
    var inputSent = 0;
    var inputTaken = 0;
    var held = [];  // input not sent yet, oldest first
    var heldChars = 0;
    var encoder = new TextEncoder();
    var serverStatus = status.textContent;

    function sendFrame(type, fields) {
      if (socket.readyState !== WebSocket.OPEN) { return; }
      var frame = { v: VERSION, type: type };
      Object.keys(fields || {}).forEach(function (name) { frame[name] = fields[name]; });
      socket.send(JSON.stringify(frame));
    }
    function sendResize() { sendFrame("resize", { cols: term.cols, rows: term.rows }); }
    function sendPiece(piece, size) {
      sendFrame("input", { data: piece });
      inputSent += size;
    }
    function sendInput(data) {
      if (socket.readyState !== WebSocket.OPEN) { return; }
      if (data === "\x03" && held.length) {
        // Ctrl-C while a paste waits for the instance: the rest of it is not sent (the program it was
        // for is being interrupted, and the shell would run it), and Ctrl-C goes now, past the window.
        var dropped = heldChars;
        held = [];
        heldChars = 0;
        sendPiece(data, 1);
        showStatus();
        writeNote("Ctrl-C: " + dropped + " characters of input the instance had not read yet were not sent.");
        return;
      }
      held.push(data);
      heldChars += data.length;
      pumpInput();
    }
    // Send what waits, in pieces, while the window allows.
    function pumpInput() {
      while (held.length && socket.readyState === WebSocket.OPEN) {
        var data = held[0];
        var end = Math.min(INPUT_PIECE, data.length);
        // Never split a surrogate pair between two pieces.
        var last = data.charCodeAt(end - 1);
        if (end < data.length && last >= 0xd800 && last <= 0xdbff) { end += 1; }
        var piece = data.slice(0, end);
        var size = encoder.encode(piece).length;
        if (inputSent - inputTaken + size > INPUT_WINDOW) { break; }
        sendPiece(piece, size);
        if (end < data.length) { held[0] = data.slice(end); } else { held.shift(); }
        heldChars -= piece.length;
      }
      showStatus();
    }
    // The server's status line, unless input is waiting for the instance, which it then says.
    function showStatus() {
      if (closedReason) { return; }
      status.textContent = heldChars ? "The instance is not reading input yet: " + heldChars +
        " characters wait to be sent (Ctrl-C drops them)." : serverStatus;
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
        serverStatus = plain(message.message);
        showStatus();
      } else if (message.type === "ready") {
        serverStatus = "Connected.";
        showStatus();
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
      } else if (message.type === "taken") {
        // The server has taken this much of the input in all: the window moves on (terminal/flow.py).
        inputTaken = Math.max(inputTaken, Number(message.bytes) || 0);
        pumpInput();
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
      writeNote(clean);
    }
    // A line from the portal inside the terminal, on the screen only (never to the shell).
    function writeNote(text) {
      term.write("\r\n\x1b[30;43m Passport \x1b[0m \x1b[1;33m" + plain(text) + "\x1b[0m\r\n");
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
