// Small behaviours of the portal's pages, here rather than in inline handlers (the
// Content-Security-Policy runs no inline script).
(function () {
  "use strict";
  // <select data-submit-on-change>: picking a value submits its form (the request list's status filter).
  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target instanceof HTMLSelectElement && target.hasAttribute("data-submit-on-change") && target.form) {
      target.form.requestSubmit();
    }
  });
  // <button data-copy-from="ID" data-copy-status="ID">: copies the text of element ID to the
  // clipboard and says "Copied" in the status element. Where the clipboard cannot be used (an old
  // browser, a page not served over HTTPS, permission refused), the text is selected instead and
  // the status says to copy it by hand. Delegated, so it works in fragments htmx swaps in later.
  document.addEventListener("click", function (event) {
    var button = event.target instanceof Element ? event.target.closest("button[data-copy-from]") : null;
    if (!button) {
      return;
    }
    var source = document.getElementById(button.getAttribute("data-copy-from") || "");
    var status = document.getElementById(button.getAttribute("data-copy-status") || "");
    if (!source) {
      return;
    }
    function say(message, failed) {
      if (status) {
        status.textContent = message;
        status.classList.toggle("copy-failed", failed);
      }
    }
    function copyByHand() {
      var selection = window.getSelection();
      if (selection) {
        var range = document.createRange();
        range.selectNodeContents(source);
        selection.removeAllRanges();
        selection.addRange(range);
      }
      say("Copying is not available here: the text is selected, press Ctrl+C (\u2318C on a Mac) to copy it.", true);
    }
    say("", false);
    if (!navigator.clipboard || typeof navigator.clipboard.writeText !== "function") {
      copyByHand();
      return;
    }
    navigator.clipboard.writeText(source.textContent || "").then(function () {
      say("Copied", false);
    }, copyByHand);
  });
})();
// The top bar (templates/base.html): on narrow screens the nav and the person menu fold behind
// the Menu button; the person menu (a <details>) closes on a click elsewhere or Escape.
(function () {
  "use strict";
  function setNavOpen(topbar, open) {
    var toggle = topbar.querySelector("[data-nav-toggle]");
    topbar.classList.toggle("nav-open", open);
    if (toggle) {
      toggle.setAttribute("aria-expanded", open ? "true" : "false");
    }
  }
  document.addEventListener("click", function (event) {
    var target = event.target instanceof Element ? event.target : null;
    var toggle = target ? target.closest("[data-nav-toggle]") : null;
    if (toggle) {
      var topbar = toggle.closest("[data-topbar]");
      if (topbar) {
        setNavOpen(topbar, !topbar.classList.contains("nav-open"));
      }
      return;
    }
    document.querySelectorAll("details[data-person-menu][open]").forEach(function (menu) {
      if (!target || !menu.contains(target)) {
        menu.open = false;
      }
    });
  });
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") {
      return;
    }
    // One Escape closes one thing: the open person menu first, then the folded nav.
    var menus = document.querySelectorAll("details[data-person-menu][open]");
    menus.forEach(function (menu) {
      menu.open = false;
      var summary = menu.querySelector("summary");
      if (summary && menu.contains(document.activeElement)) {
        summary.focus();
      }
    });
    if (menus.length) {
      return;
    }
    document.querySelectorAll("[data-topbar].nav-open").forEach(function (topbar) {
      var toggle = topbar.querySelector("[data-nav-toggle]");
      var hadFocus = topbar.contains(document.activeElement);
      setNavOpen(topbar, false);
      if (toggle && hadFocus) {
        toggle.focus();
      }
    });
  });
})();
// htmx failures made visible. htmx swaps no 4xx/5xx answer, so a refused or failed request (a
// click, a search, a poll) would otherwise show nothing. The message goes right after the element
// that asked, or after its closest [data-htmx-errors] holder, or into the page's alert region
// (base.html) where that holder says data-htmx-errors="page". It is the portal's own line where the
// answer is one (the X-Passport-Message header, core/htmx.py), else a generic one; always set as
// text. A poll (hx-trigger "every Ns") that fails waits twice as long after each failure (and at
// least the answer's Retry-After) before asking again, and is back to its pace once one succeeds.
(function () {
  "use strict";
  var LONGEST_WAIT_MS = 120000;
  var LONGEST_MESSAGE = 500;
  var holders = new WeakMap(); // element that asked -> where its message goes
  var shown = new WeakMap(); // holder -> its message element
  var backoff = new WeakMap(); // polling element -> {failures, retryAt}

  function pollInterval(elt) {
    var match = /(?:^|,)\s*every\s+(\d+(?:\.\d+)?)(ms|s|m)?\b/.exec(elt.getAttribute("hx-trigger") || "");
    if (!match) {
      return 0;
    }
    var unit = match[2] === "s" ? 1000 : match[2] === "m" ? 60000 : 1;
    return parseFloat(match[1]) * unit;
  }
  function holderOf(elt) {
    return elt.closest("[data-htmx-errors]") || elt;
  }
  function portalLine(xhr) {
    if (!xhr || !xhr.getResponseHeader("X-Passport-Message")) {
      return "";
    }
    if ((xhr.getResponseHeader("Content-Type") || "").indexOf("text/plain") !== 0) {
      return "";
    }
    var text = (xhr.responseText || "").trim();
    return text.length <= LONGEST_MESSAGE ? text : "";
  }
  function show(holder, text, urgent) {
    var message = shown.get(holder);
    if (!message || !message.isConnected) {
      message = document.createElement("p");
      message.className = "htmx-error";
      message.setAttribute("data-testid", "htmx-error");
      var region = holder.getAttribute("data-htmx-errors") === "page" ? document.querySelector("[data-page-alerts]") : null;
      if (region) {
        region.appendChild(message);
        region.hidden = false;
      } else {
        holder.insertAdjacentElement("afterend", message);
      }
      shown.set(holder, message);
    }
    message.setAttribute("role", urgent ? "alert" : "status");
    message.textContent = text;
  }
  function clear(holder) {
    var message = shown.get(holder);
    shown.delete(holder);
    if (!message) {
      return;
    }
    var region = message.parentElement;
    message.remove();
    if (region && region.hasAttribute("data-page-alerts") && !region.children.length) {
      region.hidden = true;
    }
  }
  function failed(elt, xhr) {
    var holder = holders.get(elt) || holderOf(elt);
    var reached = xhr && xhr.status > 0;
    var line = portalLine(xhr);
    var every = pollInterval(elt);
    if (!every) {
      show(
        holder,
        line ||
          (reached
            ? "Passport could not do this (error " + xhr.status + "). Try again in a moment."
            : "Could not reach Passport: check your connection and try again."),
        true
      );
      return;
    }
    var state = backoff.get(elt) || { failures: 0, retryAt: 0 };
    state.failures += 1;
    var wait = Math.min(LONGEST_WAIT_MS, every * Math.pow(2, state.failures));
    var retryAfter = reached ? parseInt(xhr.getResponseHeader("Retry-After") || "", 10) : NaN;
    if (retryAfter > 0) {
      wait = Math.max(wait, Math.min(retryAfter * 1000, LONGEST_WAIT_MS));
    }
    state.retryAt = Date.now() + wait;
    backoff.set(elt, state);
    var reason =
      line ||
      (reached
        ? "Passport did not answer properly (error " + xhr.status + ")."
        : "Could not reach Passport.");
    show(holder, "This part of the page is not up to date. " + reason + " Trying again in " + Math.round(wait / 1000) + " seconds.", false);
  }
  // The element that asked: htmx sends a swapped-out element's afterRequest on to an ancestor
  // still in the page, with that ancestor as detail.elt; requestConfig.elt stays the asker.
  function askerOf(event) {
    return (event.detail.requestConfig && event.detail.requestConfig.elt) || event.detail.elt;
  }
  document.addEventListener("htmx:beforeRequest", function (event) {
    var elt = askerOf(event);
    var state = backoff.get(elt);
    // A poll's tick comes at its own pace; during a backoff it asks nothing (a little early is fine:
    // the ticks do not fall exactly on retryAt).
    if (state && Date.now() < state.retryAt - 250) {
      event.preventDefault();
      return;
    }
    holders.set(elt, holderOf(elt)); // remembered now: a swap may take the element out of the page
  });
  document.addEventListener("htmx:responseError", function (event) {
    failed(askerOf(event), event.detail.xhr);
  });
  document.addEventListener("htmx:sendError", function (event) {
    failed(askerOf(event), null);
  });
  document.addEventListener("htmx:timeout", function (event) {
    failed(askerOf(event), null);
  });
  document.addEventListener("htmx:afterRequest", function (event) {
    var elt = askerOf(event);
    if (event.detail.successful === true) {
      backoff.delete(elt);
      clear(holders.get(elt) || holderOf(elt));
    }
  });
})();
