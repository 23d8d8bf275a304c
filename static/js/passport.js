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
