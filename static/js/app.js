// Applies the step streams' named SSE events (htmx 4 dispatches them as DOM events),
// keeps typed answers as drafts until they are saved, and keeps the progress line current.
(function () {
  "use strict";

  function streamRoot(event) {
    var target = event.target;
    return target && target.nodeType === 1 && target.hasAttribute("data-stream") ? target : null;
  }

  function part(root, role) {
    return root.querySelector('[data-role="' + role + '"]');
  }

  // Event data is HTML-escaped text: decode it without ever inserting it as markup.
  var decoder = document.createElement("textarea");
  function unescapeText(html) {
    decoder.innerHTML = html;
    return decoder.value;
  }

  document.addEventListener("status", function (event) {
    var root = streamRoot(event);
    if (!root) return;
    var el = part(root, "status-text");
    if (el) el.textContent = event.detail.data;
    // While the step waits (queued, or the model is asked again), the person may take the
    // prepared text instead: the same two marks as server/attempts.py's waiting().
    var prepared = part(root, "prepared");
    if (prepared) prepared.hidden = !/^queued:|asking again/.test(event.detail.data);
  });

  // The text as streamed; what is shown leaves out the machine-readable tail (a question's
  // quick replies, a report's score lines), which `done` then renders as buttons and a chart.
  var streamed = new WeakMap();
  // The same patterns as server/generators/formats.py LIVE_TAILS (a test keeps them equal):
  // the text from their first match on is a reply or score tail, or could still become one.
  var TAILS = {
    question: /(?:^|\n)(?:[ \t]*(?:#{1,6}[ \t]*)?[*_]{0,3}[ \t]*(?:\d{1,2}[.)][ \t]*)?[*_]{0,3}[ \t]*(?:(?:suggested|possible|example|sample|answer|quick|short|reply|here|some|your|are)[ \t]+){0,4}(?:responses|replies|answers|options|choices)(?:[ \t]+out[ \t]+of[ \t]+10)?(?:[ \t]*\([^)\n]{0,40}\))?[ \t]*[*_]{0,3}[ \t]*:?[ \t]*[*_]{0,3}[ \t]*:?[ \t]*(?:\n|(?![\s\S]))|(?:(?=[ \t]*(?:[-*+\u2022]|\d{1,2}[.)]|[a-d][.)]|\([1-9a-d]\))[ \t]+[^\n]*\n)[^\n]*\n|[ \t]*\n)*(?=(?:[ \t]*(?:[-*+\u2022]|\d{1,2}[.)]|[a-d][.)]|\([1-9a-d]\))[ \t]+[^\n]*|(?:[ \t]*(?:(?:[-*+\u2022]|\d{1,2}[.)]|[a-d][.)]|\([1-9a-d]\))|\d{1,2}|\()(?:[ \t][^\n]*)?|[ \t]*(?:#{1,6}[ \t]*)?[*_]{0,3}[ \t]*(?:\d{1,2}[.)]?[ \t]*)?[*_]{0,3}[ \t]*(?:(?:suggested|responses|possible|example|replies|answers|options|choices|sample|answer|quick|short|reply|here|some|your|are)[ \t]+){0,4}(?:(?:responses|replies|answers|options|choices)(?:[ \t]*\([^)\n]{0,40}\)?)?[ \t]*[*_]{0,3}[ \t]*:?[ \t]*[*_]{0,3}[ \t]*|(?:a(?:(?:n(?:s(?:w(?:e(?:r(?:s)?)?)?)?)?|r(?:e)?))?|c(?:h(?:o(?:i(?:c(?:e(?:s)?)?)?)?)?)?|e(?:x(?:a(?:m(?:p(?:l(?:e)?)?)?)?)?)?|h(?:e(?:r(?:e)?)?)?|o(?:p(?:t(?:i(?:o(?:n(?:s)?)?)?)?)?)?|p(?:o(?:s(?:s(?:i(?:b(?:l(?:e)?)?)?)?)?)?)?|q(?:u(?:i(?:c(?:k)?)?)?)?|r(?:e(?:(?:p(?:l(?:(?:i(?:e(?:s)?)?|y))?)?|s(?:p(?:o(?:n(?:s(?:e(?:s)?)?)?)?)?)?))?)?|s(?:(?:a(?:m(?:p(?:l(?:e)?)?)?)?|h(?:o(?:r(?:t)?)?)?|o(?:m(?:e)?)?|u(?:g(?:g(?:e(?:s(?:t(?:e(?:d)?)?)?)?)?)?)?))?|y(?:o(?:u(?:r)?)?)?))?))(?![\s\S]))[^\n]*(?![\s\S]))/i,
    report: /(?:^|\n)(?:[ \t]*(?:#{1,6}[ \t]*)?[*_]{0,3}[ \t]*(?:\d{1,2}[.)][ \t]*)?[*_]{0,3}[ \t]*(?:(?:dimension|final|your|the|my)[ \t]+){0,4}(?:scorecard|ratings|scores|rating|score)(?:[ \t]+out[ \t]+of[ \t]+10)?(?:[ \t]*\([^)\n]{0,40}\))?[ \t]*[*_]{0,3}[ \t]*:?[ \t]*[*_]{0,3}[ \t]*:?[ \t]*(?:\n|(?![\s\S]))|(?:(?=(?:[ \t]*(?:(?:[-*+\u2022]|\d{1,2}[.)]|[a-d][.)]|\([1-9a-d]\))[ \t]+)?(?:#{1,6}[ \t]*)?[*_]{0,2}[A-Za-z][A-Za-z'&\/-]*(?:[ \t]+[A-Za-z][A-Za-z'&\/-]*){0,3}[*_]{0,2}:?[*_]{0,2}(?:[ \t]*[:=\u2013\u2014-]|[ \t]*\(|[ \t]+(?=\d))[ \t]*[*_]{0,2}[ \t]*\d{1,2}(?:\.\d)?(?!\d)(?:[ \t]*\/[ \t]*10|[ \t]+out[ \t]+of[ \t]+10)?[*_)]{0,3}(?:[ \t]*[-:,.;(\u2013\u2014][^\n]*)?[ \t]*|[ \t]*\|[^\n]*)\n)[^\n]*\n|[ \t]*\n)*(?=(?:(?:[ \t]*(?:(?:[-*+\u2022]|\d{1,2}[.)]|[a-d][.)]|\([1-9a-d]\))[ \t]+)?(?:#{1,6}[ \t]*)?[*_]{0,2}[A-Za-z][A-Za-z'&\/-]*(?:[ \t]+[A-Za-z][A-Za-z'&\/-]*){0,3}[*_]{0,2}:?[*_]{0,2}(?:[ \t]*[:=\u2013\u2014-]|[ \t]*\(|[ \t]+(?=\d))[ \t]*[*_]{0,2}[ \t]*\d{1,2}(?:\.\d)?(?!\d)(?:[ \t]*\/[ \t]*10|[ \t]+out[ \t]+of[ \t]+10)?[*_)]{0,3}(?:[ \t]*[-:,.;(\u2013\u2014][^\n]*)?[ \t]*|[ \t]*\|[^\n]*)|(?:[ \t]*\|[^\n]*|[ \t]*(?:(?:[-*+\u2022]|\d{1,2}[.)]|[a-d][.)]|\([1-9a-d]\))[ \t]+)?(?:#{1,6}[ \t]*)?[*_]{0,2}(?:[A-Za-z][A-Za-z'&\/-]*(?:[ \t]+[A-Za-z][A-Za-z'&\/-]*){0,3}[ \t]*)?[*_]{0,2}:?[*_]{0,2}(?:(?:[ \t]*[:=\u2013\u2014-]|[ \t]*\(|[ \t]+(?=\d))[ \t]*[*_]{0,2}[ \t]*(?:\d{1,2}(?:\.\d)?(?!\d)(?:[ \t]*\/[ \t]*(?:1|10)?|[ \t]+(?:o|ou|out(?:[ \t]+(?:o|of(?:[ \t]+(?:1|10)?)?)?)?))?[*_)]{0,3})?)?|[ \t]*(?:#{1,6}[ \t]*)?[*_]{0,3}[ \t]*(?:\d{1,2}[.)]?[ \t]*)?[*_]{0,3}[ \t]*(?:(?:dimension|scorecard|ratings|scores|rating|final|score|your|the|my)[ \t]+){0,4}(?:(?:scorecard|ratings|scores|rating|score)(?:[ \t]*\([^)\n]{0,40}\)?)?[ \t]*[*_]{0,3}[ \t]*:?[ \t]*[*_]{0,3}[ \t]*|(?:d(?:i(?:m(?:e(?:n(?:s(?:i(?:o(?:n)?)?)?)?)?)?)?)?|f(?:i(?:n(?:a(?:l)?)?)?)?|m(?:y)?|r(?:a(?:t(?:i(?:n(?:g(?:s)?)?)?)?)?)?|s(?:c(?:o(?:r(?:e(?:(?:c(?:a(?:r(?:d)?)?)?|s))?)?)?)?)?|t(?:h(?:e)?)?|y(?:o(?:u(?:r)?)?)?))?))(?![\s\S]))[^\n]*(?![\s\S]))/i,
  };

  function show(root, el, text) {
    streamed.set(el, text);
    var tail = TAILS[root.getAttribute("data-step-kind")];
    var cut = tail ? text.search(tail) : -1;
    el.textContent = cut >= 0 ? text.slice(0, cut) : text;
  }

  document.addEventListener("snapshot", function (event) {
    var root = streamRoot(event);
    if (!root) return;
    var el = part(root, "text");
    if (el) show(root, el, unescapeText(event.detail.data));
  });

  document.addEventListener("chunk", function (event) {
    var root = streamRoot(event);
    if (!root) return;
    var el = part(root, "text");
    if (el) show(root, el, (streamed.has(el) ? streamed.get(el) : el.textContent) + unescapeText(event.detail.data));
  });

  document.addEventListener("done", function (event) {
    var root = streamRoot(event);
    if (!root) return;
    var hadFocus = root.contains(document.activeElement);
    var template = document.createElement("template");
    template.innerHTML = event.detail.data;
    var fresh = Array.prototype.slice.call(template.content.children);
    root.replaceWith(template.content);
    fresh.forEach(function (el) {
      htmx.process(el);
      restoreDrafts(el);
    });
    updateProgress();
    var field = fresh.length && fresh[0].querySelector("textarea");
    if (field && (hadFocus || document.activeElement === document.body)) field.focus({ preventScroll: true });
  });

  function updateProgress() {
    var progress = document.getElementById("progress");
    var steps = document.querySelectorAll("[data-step][data-progress]");
    if (progress && steps.length) progress.textContent = steps[steps.length - 1].getAttribute("data-progress");
  }

  // Drafts: what a person types survives a reload or an error until the answer is saved.
  function draftKey(form) {
    return "crossroads-draft-" + form.getAttribute("data-draft");
  }

  function restoreDrafts(scope) {
    var forms = scope.querySelectorAll ? scope.querySelectorAll("form[data-draft]") : [];
    Array.prototype.forEach.call(forms, function (form) {
      var field = form.querySelector("textarea");
      var saved = window.localStorage && localStorage.getItem(draftKey(form));
      if (field && saved && !field.value) field.value = saved;
    });
  }

  document.addEventListener("input", function (event) {
    var form = event.target.form;
    if (form && form.hasAttribute("data-draft") && window.localStorage) {
      localStorage.setItem(draftKey(form), event.target.value);
    }
  });

  // Deleting a journey also forgets the drafts this browser kept for it.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var sid = form && form.getAttribute && form.getAttribute("data-forget-drafts");
    if (!sid || !window.localStorage) return;
    var prefix = "crossroads-draft-" + sid + "-";
    for (var i = localStorage.length - 1; i >= 0; i--) {
      var key = localStorage.key(i);
      if (key && key.indexOf(prefix) === 0) localStorage.removeItem(key);
    }
  });

  document.addEventListener("htmx:after:swap", function () {
    updateProgress();
  });

  // A saved answer's draft is no longer needed; the step is replaced by the server's answer.
  document.addEventListener("htmx:after:request", function (event) {
    var source = event.target;
    var ctx = event.detail && event.detail.ctx;
    var ok = ctx && ctx.response && ctx.response.status < 400;
    if (!ok || !source || !source.closest) return;
    var step = source.closest("[data-step]");
    if (!step) return;
    Array.prototype.forEach.call(step.querySelectorAll("form[data-draft]"), function (form) {
      if (window.localStorage) localStorage.removeItem(draftKey(form));
    });
  });

  // Buttons of a form in flight are disabled, so a double click sends one answer.
  document.addEventListener("htmx:before:request", function (event) {
    var form = event.target;
    if (form && form.tagName === "FORM") {
      Array.prototype.forEach.call(form.querySelectorAll("button"), function (b) { b.disabled = true; });
    }
  });
  document.addEventListener("htmx:after:request", function (event) {
    var form = event.target;
    if (form && form.tagName === "FORM" && form.isConnected) {
      Array.prototype.forEach.call(form.querySelectorAll("button"), function (b) { b.disabled = false; });
    }
  });

  document.addEventListener("DOMContentLoaded", function () {
    restoreDrafts(document);
  });
})();
