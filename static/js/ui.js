// Around the streams: drafts, forms that never stay dead, keys, copy buttons, and where focus
// and scrolling go when a step is sent or finished. No inline handlers anywhere (the CSP).
(function () {
  "use strict";

  var each = function (list, fn) { Array.prototype.forEach.call(list, fn); };
  var reducedMotion = window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)");
  var coarse = window.matchMedia && window.matchMedia("(pointer: coarse)");

  // ---- A polite voice for things that happen out of sight ---------------------------------
  var announcer;
  function announce(text) {
    if (!announcer) return;
    announcer.textContent = "";
    // A fresh node each time, so the same words are announced again.
    setTimeout(function () { announcer.textContent = text; }, 50);
  }

  // ---- Drafts: typed text survives a reload or a failed send until the answer is saved ----
  function draftKey(form) {
    return "crossroads-draft-" + form.getAttribute("data-draft");
  }

  function storage() {
    try { return window.localStorage; } catch (e) { return null; }
  }

  function restoreDrafts(scope) {
    var store = storage();
    each(scope.querySelectorAll ? scope.querySelectorAll("form[data-draft]") : [], function (form) {
      var field = form.querySelector("textarea");
      var saved = store && store.getItem(draftKey(form));
      if (field && saved && !field.value) field.value = saved;
    });
  }

  document.addEventListener("input", function (event) {
    var form = event.target.form;
    var store = storage();
    if (form && form.hasAttribute("data-draft") && store) store.setItem(draftKey(form), event.target.value);
  });

  // Deleting a journey also forgets the drafts this browser kept for it.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var sid = form && form.getAttribute && form.getAttribute("data-forget-drafts");
    var store = storage();
    if (!sid || !store) return;
    var prefix = "crossroads-draft-" + sid + "-";
    for (var i = store.length - 1; i >= 0; i--) {
      var key = store.key(i);
      if (key && key.indexOf(prefix) === 0) store.removeItem(key);
    }
  });

  // ---- Requests: buttons are disabled while a form is in flight and always come back -------
  var inFlight = new WeakMap(); // request context -> what it disabled, its form and step

  function stepOf(el) {
    return el && el.closest ? el.closest("[data-step]") : null;
  }

  // The error slot a form's errors go to: the one it names, else its step's, else the page's.
  function slotFor(form) {
    try {
      var named = JSON.parse(form.getAttribute("hx-headers") || "{}")["X-Error-Slot"];
      var found = named && document.querySelector(named);
      if (found) return found;
    } catch (e) { /* not JSON: fall through */ }
    var step = stepOf(form);
    return (step && step.querySelector(".error-slot")) || document.getElementById("session-error") ||
      document.getElementById("home-error") || document.getElementById("page-error");
  }

  function isAnswer(form) {
    return form.classList.contains("answer-form") || form.classList.contains("reply-form");
  }

  // Keyed by the request's context, the one object that lives from before:request to finally:
  // by then a form its own response replaced is detached, and htmx fires on the document.
  function flightOf(event) {
    var ctx = event.detail && event.detail.ctx;
    return ctx ? inFlight.get(ctx) : null;
  }

  document.addEventListener("htmx:before:request", function (event) {
    var form = event.target;
    var ctx = event.detail && event.detail.ctx;
    if (!form || form.tagName !== "FORM" || !ctx) return;
    var step = stepOf(form);
    // One answer per question: while one is being sent, every way of answering waits.
    var scope = isAnswer(form) && step ? step : form;
    var buttons = Array.prototype.filter.call(scope.querySelectorAll("button"), function (b) { return !b.disabled; });
    var drafts = isAnswer(form) && step ? Array.prototype.map.call(step.querySelectorAll("form[data-draft]"), draftKey) : [];
    // Disabling the focused button would drop focus to <body>: remember where it was.
    inFlight.set(ctx, {
      form: form, buttons: buttons, drafts: drafts, focus: document.activeElement,
      step: step && step.getAttribute("data-step"),
    });
    buttons.forEach(function (b) { b.disabled = true; });
    if (isAnswer(form)) following = true; // the person is acting at the end of the page
  });

  document.addEventListener("htmx:finally:request", function (event) {
    var flight = flightOf(event);
    if (!flight) return;
    inFlight.delete(event.detail.ctx);
    flight.buttons.forEach(function (b) { b.disabled = false; });
    var ctx = event.detail.ctx;
    if (ctx.response && ctx.response.status < 400) {
      afterSent(flight.form, flight);
    } else if (flight.focus && flight.focus.isConnected && document.activeElement === document.body) {
      flight.focus.focus(); // not sent: the person is back where they were
    }
  });

  // The answer is saved (before it is swapped in): the drafts it came from are not needed.
  document.addEventListener("htmx:after:request", function (event) {
    var flight = flightOf(event);
    var ctx = event.detail.ctx;
    var store = storage();
    if (!flight || !store || !(ctx.response && ctx.response.status < 400)) return;
    flight.drafts.forEach(function (key) { store.removeItem(key); });
  });

  function failed(form, title) {
    var slot = slotFor(form);
    if (!slot) return;
    var message = document.createElement("p");
    message.className = "error-message";
    var strong = document.createElement("strong");
    strong.textContent = title;
    message.appendChild(strong);
    message.appendChild(document.createTextNode(
      isAnswer(form)
        ? " Your answer was not sent. It is still here and kept in this browser; send it again in a moment."
        : " Nothing was changed. Try again in a moment."
    ));
    slot.replaceChildren(message);
  }

  // No response at all (network cut, server gone): say what did and did not happen.
  document.addEventListener("htmx:error", function (event) {
    var form = event.target;
    if (!form || form.tagName !== "FORM") return;
    var ctx = event.detail && event.detail.ctx;
    if (ctx && ctx.response) return; // the server answered: see below
    failed(form, "Could not reach Crossroads.");
  });

  // An error page that is not ours (a proxy's 502, say) must never replace the form: our
  // own errors name their slot (HX-Retarget); anything else is said in the slot instead.
  document.addEventListener("htmx:before:swap", function (event) {
    var form = event.target;
    var ctx = event.detail && event.detail.ctx;
    if (!form || form.tagName !== "FORM" || !ctx || !ctx.response) return;
    if (ctx.response.status < 400 || (ctx.hx && ctx.hx.retarget)) return;
    event.preventDefault();
    failed(form, "Crossroads could not answer just now (error " + ctx.response.status + ").");
  });

  function afterSent(form, flight) {
    var n = flight.step;
    updateProgress();
    enhance(document);
    // The form that had focus is gone: focus the step that now needs the person's eyes (the
    // next one being written after an answer, else the replaced step itself), never <body>.
    if (form.isConnected && document.activeElement !== document.body) return;
    // A form answered in place (say, "This doesn't fit me") hands focus to what replaced it.
    var replaced = form.id && document.getElementById(form.id);
    if (replaced && replaced !== form) {
      replaced.focus();
      return;
    }
    if (n === null) return;
    var next = document.getElementById("step-" + (Number(n) + 1));
    var target = next && next.classList.contains("is-live") ? next : document.getElementById("step-" + n);
    if (target) focusStep(target, following);
  }

  // ---- Keys: Enter sends, Shift+Enter is a new line (on a phone, Enter is a new line) -------
  function enterSends() {
    return !(coarse && coarse.matches);
  }

  document.addEventListener("keydown", function (event) {
    var field = event.target;
    if (event.key !== "Enter" || !field || field.tagName !== "TEXTAREA" || event.isComposing) return;
    var form = field.form;
    if (!form || !form.hasAttribute("data-draft")) return;
    var modified = event.ctrlKey || event.metaKey;
    if (!modified && (event.shiftKey || event.altKey || !enterSends())) return;
    event.preventDefault();
    var send = form.querySelector('button[type="submit"]');
    if (!field.value.trim() || (send && send.disabled)) return;
    form.requestSubmit(send || undefined);
  });

  function keysHint() {
    return enterSends()
      ? "Enter sends; Shift+Enter starts a new line. "
      : "";
  }

  // ---- Copy buttons -------------------------------------------------------------------------
  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
    return new Promise(function (resolve, reject) {
      var area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.className = "visually-hidden";
      document.body.appendChild(area);
      area.select();
      var done = false;
      try { done = document.execCommand("copy"); } catch (e) { done = false; }
      area.remove();
      if (done) resolve(); else reject(new Error("copy refused"));
    });
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("button[data-copy]");
    if (!button) return;
    var source = document.querySelector(button.getAttribute("data-copy"));
    if (!source) return;
    var text = source.tagName === "A" ? source.href : source.innerText.trim();
    var label = button.getAttribute("data-label") || button.textContent;
    button.setAttribute("data-label", label);
    copyText(text).then(function () {
      button.textContent = "Copied";
      announce(label.replace(/^Copy /, "") + " copied to the clipboard.");
    }, function () {
      button.textContent = "Could not copy: select the text instead";
    });
    setTimeout(function () { button.textContent = label; }, 2500);
  });

  // What the script adds to a page or a fresh fragment: key hints, copy buttons, drafts.
  function enhance(scope) {
    restoreDrafts(scope);
    each(scope.querySelectorAll("[data-keys-hint]"), function (el) { el.textContent = keysHint(); });
    each(scope.querySelectorAll("button[data-copy][hidden]"), function (b) { b.hidden = false; });
  }

  function updateProgress() {
    var progress = document.getElementById("progress");
    var steps = document.querySelectorAll("[data-step][data-progress]");
    if (progress && steps.length) progress.textContent = steps[steps.length - 1].getAttribute("data-progress");
  }

  // ---- Following the text, focus and the "new question below" cue --------------------------
  // The page follows the text as it streams, until the person scrolls up to read; it follows
  // again once the end of the text is back in view.
  var following = true;
  var touchY = null;
  // Where the page's own last follow left it: the scroll event of that move may arrive after
  // the person's wheel-up, and must not count as them coming back to the end.
  var ownY = null;

  window.addEventListener("wheel", function (event) { if (event.deltaY < 0) following = false; }, { passive: true });
  window.addEventListener("touchstart", function (event) { touchY = event.touches[0].clientY; }, { passive: true });
  window.addEventListener("touchmove", function (event) {
    if (touchY !== null && event.touches[0].clientY > touchY + 10) following = false;
  }, { passive: true });
  document.addEventListener("keydown", function (event) {
    var t = event.target;
    var editing = t && (t.tagName === "TEXTAREA" || t.tagName === "INPUT" || t.isContentEditable);
    if (!editing && ["PageUp", "ArrowUp", "Home"].indexOf(event.key) >= 0) following = false;
  });
  window.addEventListener("scroll", function () {
    var live = liveText();
    var back = live && live.getBoundingClientRect().bottom <= window.innerHeight;
    if (!following && back && window.scrollY !== ownY) following = true;
    var target = cueTarget && document.getElementById(cueTarget);
    if (target && inView(target)) hideCue();
  }, { passive: true });

  function liveText() {
    var all = document.querySelectorAll('.is-live [data-role="text"]');
    return all.length ? all[all.length - 1] : null;
  }

  function inView(el) {
    var r = el.getBoundingClientRect();
    return r.top >= 0 && r.top < window.innerHeight;
  }

  var MARGIN = 24;
  document.addEventListener("crossroads:text", function () {
    var live = liveText();
    if (!following || !live) return;
    var bottom = live.getBoundingClientRect().bottom;
    if (bottom > window.innerHeight - MARGIN) {
      window.scrollBy(0, bottom - window.innerHeight + MARGIN);
      ownY = window.scrollY;
    }
  });

  function scrollBehavior() {
    return reducedMotion && reducedMotion.matches ? "auto" : "smooth";
  }

  function focusStep(step, scroll) {
    var heading = step.querySelector(".step-title");
    if (!heading) return;
    heading.focus({ preventScroll: true });
    if (scroll) heading.scrollIntoView({ block: "start", behavior: scrollBehavior() });
  }

  var cue, cueTarget = null;
  function showCue(step, text) {
    if (!cue) return;
    cueTarget = step.id;
    cue.textContent = text + " \u2193";
    cue.hidden = false;
  }
  function hideCue() {
    if (cue) cue.hidden = true;
    cueTarget = null;
  }

  document.addEventListener("crossroads:done", function (event) {
    var fresh = event.detail.fresh;
    fresh.forEach(enhance);
    updateProgress();
    var step = fresh[0];
    if (!step || !step.matches("[data-step]")) return;
    var asks = step.querySelector("form[data-draft], .chart");
    if (!asks) return; // a finished scenario: the first question is already on its way
    var title = step.querySelector(".step-title");
    var name = title ? title.textContent.trim() : "The next step";
    var active = document.activeElement;
    var free = event.detail.hadFocus || !active || active === document.body;
    if (following && free) {
      focusStep(step, true);
    } else if (!inView(step)) {
      showCue(step, step.getAttribute("data-step-kind") === "report" ? "Your report is ready below" : "New question below");
      announce(name + " is ready below.");
    } else {
      announce(name + " is ready.");
    }
  });

  function setUp() {
    announcer = document.createElement("div");
    announcer.className = "visually-hidden";
    announcer.setAttribute("role", "status");
    announcer.id = "announcer";
    document.body.appendChild(announcer);
    var steps = document.querySelector(".steps");
    if (steps) {
      var holder = document.createElement("div");
      holder.className = "cue";
      cue = document.createElement("button");
      cue.type = "button";
      cue.className = "primary";
      cue.hidden = true;
      cue.addEventListener("click", function () {
        var target = cueTarget && document.getElementById(cueTarget);
        hideCue();
        following = true;
        if (target) focusStep(target, true);
      });
      holder.appendChild(cue);
      steps.after(holder);
    }
    enhance(document);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", setUp);
  else setUp();
})();
