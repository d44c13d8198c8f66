// Edge Factory wizard: copy buttons, and focus and title after htmx swaps a step in. Everything works without it.
(function () {
  "use strict";

  function text(sel) {
    var el = document.querySelector(sel);
    return el ? el.textContent : "";
  }

  function copy(button) {
    var value = text(button.getAttribute("data-copy"));
    var done = function () {
      var label = button.textContent;
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = label; }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(value).then(done);
      return;
    }
    var area = document.createElement("textarea");
    area.value = value;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    try { document.execCommand("copy"); done(); } finally { document.body.removeChild(area); }
  }

  function arm(root) {
    root.querySelectorAll("button.copy[hidden]").forEach(function (b) { b.hidden = false; });
  }

  document.addEventListener("click", function (e) {
    var b = e.target.closest && e.target.closest("button.copy");
    if (b) { copy(b); }
  });

  document.addEventListener("DOMContentLoaded", function () { arm(document); });

  document.addEventListener("htmx:afterSwap", function (e) {
    arm(document);
    if (e.detail && e.detail.target && e.detail.target.id === "wizard") {
      var h = document.getElementById("step-title");
      if (h) {
        document.title = h.textContent + " · Edge Factory";
        h.focus({ preventScroll: true });
      }
    }
  });
})();
