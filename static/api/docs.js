// Starts Swagger UI (swagger-ui-dist, pinned in package.json) on /api/docs/: a static file
// rather than an inline script, for the Content-Security-Policy. Settings come from the page.
(function () {
  "use strict";
  function start() {
    var root = document.getElementById("swagger-ui");
    if (!root || !window.SwaggerUIBundle) { return; }
    var csrfHeader = root.dataset.csrfHeader;
    var csrfToken = root.dataset.csrfToken;
    window.ui = window.SwaggerUIBundle({
      url: root.dataset.schemaUrl,
      dom_id: "#swagger-ui",
      presets: [window.SwaggerUIBundle.presets.apis],
      layout: "BaseLayout",
      deepLinking: true,
      // No request to validator.swagger.io (the default): the page talks to the portal only.
      validatorUrl: null,
      // "Try it out" with the browser's session: Django wants the CSRF token on unsafe methods.
      requestInterceptor: function (request) {
        var method = (request.method || "GET").toUpperCase();
        if (csrfHeader && csrfToken && ["GET", "HEAD", "OPTIONS"].indexOf(method) === -1) {
          request.headers[csrfHeader] = csrfToken;
        }
        return request;
      },
    });
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();
