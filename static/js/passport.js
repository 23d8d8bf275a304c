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
})();
