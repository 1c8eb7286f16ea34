// Applies the step streams' named SSE events (htmx 4 dispatches them as DOM events) and tells
// the truth about each stream's connection: connecting, queued, writing, reconnecting, back,
// fell back, failed. What happens around the stream (forms, focus, scrolling) is in ui.js.
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

  // ---- Connection state -------------------------------------------------------------------
  // The server says what it is doing (status events); the page adds what only the browser
  // knows: that the connection dropped or went silent, and that it came back.

  var RESTARTING = /restarting/i;
  var BACK_SHOWN_MS = 4000;
  var RETRY_MAX_MS = 30000;
  var conns = new WeakMap();

  function conn(root) {
    var c = conns.get(root);
    if (!c) {
      var beat = parseFloat(root.getAttribute("data-heartbeat-s"));
      c = {
        heartbeatMs: (beat > 0 ? beat : 5) * 1000,
        server: null, // the last status the server sent
        lost: false, // between a drop (or silence) and the next message
        back: null, // timer that ends the "back" note
        silence: null, // timer: 2 heartbeats without a word means the line is dead
        failures: 0, // failed first connections in a row, for the retry delay
      };
      conns.set(root, c);
    }
    return c;
  }

  // What the writer writes after the text shown is complete (server/viewing.py's FINISHING).
  var FINISHING = { question: "Writing the quick replies…", report: "Writing the scores…" };

  // What a server status means to a person, and the state name CSS and tests key on.
  function describe(status, kind) {
    if (!status || status === "connecting") return { state: "connecting", text: "Connecting…" };
    if (status === "writing") return { state: "writing", text: "Writing…" };
    if (status === "finishing") return { state: "finishing", text: FINISHING[kind] || "Finishing…" };
    var queued = /^queued:\s*(.*)$/i.exec(status);
    if (queued) {
      return { state: "queued", text: "In the queue: " + queued[1] };
    }
    if (/asking again/i.test(status)) return { state: "retrying", text: status };
    if (/^using /i.test(status)) {
      return {
        state: "fell-back",
        text: "The model did not come through, so this is " + status.replace(/^using /i, "") + " instead",
      };
    }
    if (RESTARTING.test(status)) return { state: "reconnecting", text: "The server is restarting; reconnecting by itself…" };
    // A stream the server ends while its database does not answer (server/viewing.py).
    if (/reconnects by itself/i.test(status)) return { state: "reconnecting", text: status.charAt(0).toUpperCase() + status.slice(1) };
    return { state: "writing", text: status.charAt(0).toUpperCase() + status.slice(1) };
  }

  function render(root) {
    var c = conn(root);
    var shown;
    if (c.lost) {
      shown = {
        state: "reconnecting",
        text: "Connection lost. Reconnecting… (the text so far is kept)",
      };
    } else {
      shown = describe(c.server, root.getAttribute("data-step-kind"));
      if (c.back && shown.state !== "reconnecting") {
        shown = { state: "back", text: "Connected again. " + shown.text };
      }
    }
    if (root.getAttribute("data-state") !== shown.state) root.setAttribute("data-state", shown.state);
    var el = part(root, "status-text");
    if (el && el.textContent !== shown.text) el.textContent = shown.text;
  }

  function listen(root) {
    var c = conn(root);
    clearTimeout(c.silence);
    c.silence = setTimeout(function () { silent(root); }, 2 * c.heartbeatMs);
  }

  function heard(root) {
    // Any message (heartbeats included) proves the line is alive.
    var c = conn(root);
    listen(root);
    c.failures = 0;
    if (c.lost) {
      c.lost = false;
      clearTimeout(c.back);
      c.back = setTimeout(function () {
        c.back = null;
        if (root.isConnected) render(root);
      }, BACK_SHOWN_MS);
    }
  }

  function lose(root) {
    var c = conn(root);
    if (c.lost) return;
    c.lost = true;
    clearTimeout(c.back);
    c.back = null;
    render(root);
  }

  // Two heartbeats of silence: the connection is dead even if no error was raised (a stalled
  // proxy). Say so, and make the stream reconnect (it resumes after the last event it had).
  function silent(root) {
    if (!root.isConnected) return;
    lose(root);
    var sse = root._htmx && root._htmx.sse;
    if (sse && sse.reader) {
      sse.reader.cancel();
    } else if (sse && sse.delayCanceller) {
      sse.delayCanceller();
    } else {
      var pending = firstRequests.get(root);
      if (pending && pending.request && pending.request.abort) pending.request.abort();
    }
    listen(root);
  }

  // The first connection is an ordinary htmx request; keep it so silence can abort it.
  var firstRequests = new WeakMap();
  document.addEventListener("htmx:before:request", function (event) {
    var root = streamRoot(event);
    if (!root) return;
    firstRequests.set(root, event.detail && event.detail.ctx);
    listen(root);
  });

  // A first connection that never became a stream: try again with a growing pause (the
  // extension only retries streams that were once open). A 4xx means it never will work.
  document.addEventListener("htmx:finally:request", function (event) {
    var root = streamRoot(event);
    if (!root || !root.isConnected || (root._htmx && root._htmx.sse)) return;
    var ctx = event.detail && event.detail.ctx;
    var status = ctx && ctx.response && ctx.response.status;
    var c = conn(root);
    if (status >= 400 && status < 500) {
      clearTimeout(c.silence);
      root.setAttribute("data-state", "failed");
      var el = part(root, "status-text");
      if (el) el.textContent = "This step cannot be shown here any more. Reload the page to see where the journey is.";
      return;
    }
    lose(root);
    c.failures += 1;
    var delay = Math.min(RETRY_MAX_MS, 500 * Math.pow(2, c.failures - 1));
    setTimeout(function () { reconnectFromScratch(root); }, delay);
  });

  function reconnectFromScratch(root) {
    if (!root.isConnected || (root._htmx && root._htmx.sse)) return;
    // A fresh copy of the element connects as the page did on load; the text so far stays.
    var copy = root.cloneNode(true);
    conns.set(copy, conn(root));
    root.replaceWith(copy);
    htmx.process(copy);
  }

  document.addEventListener("htmx:sse:error", function (event) {
    var root = streamRoot(event);
    if (root) lose(root);
  });

  document.addEventListener("htmx:sse:before:message", function (event) {
    var root = streamRoot(event);
    if (!root) return;
    heard(root);
    render(root);
  });

  document.addEventListener("htmx:sse:close", function (event) {
    var root = streamRoot(event);
    if (root) clearTimeout(conn(root).silence);
  });

  // The header says who writes (templates/base.html): the model while a step's status says it
  // writes or a step it wrote arrives, the built-in writer once a step falls back to it.
  function writerOfStatus(status) {
    if (/^using /i.test(status)) return "built-in";
    return status === "writing" || status === "finishing" ? "model" : null;
  }

  var WRITER_OF_SOURCE = { model: "model", offline: "built-in", pool: "built-in" };

  function showWriter(writer) {
    if (!writer) return;
    var builtIn = writer === "built-in";
    var banner = document.querySelector('[data-role="model-banner"]');
    var model = banner && banner.querySelector('[data-writer="model"]');
    var standIn = banner && banner.querySelector('[data-writer="built-in"]');
    if (!model || !standIn) return; // no live model: the built-in writer is all there is
    model.hidden = builtIn;
    standIn.hidden = !builtIn;
    banner.classList.toggle("is-offline", builtIn);
  }

  document.addEventListener("status", function (event) {
    var root = streamRoot(event);
    if (!root) return;
    conn(root).server = event.detail.data;
    render(root);
    showWriter(writerOfStatus(event.detail.data));
    // While the step waits (queued, or the model is asked again), the person may take the
    // prepared text instead: the same two marks as server/attempts.py's waiting().
    var prepared = part(root, "prepared");
    if (prepared) prepared.hidden = !/^queued:|asking again/.test(event.detail.data);
  });

  // ---- Text -------------------------------------------------------------------------------
  // The server sends only what may be shown (never a quick-reply tail or score lines): the text
  // as `snapshot` and `chunk` (escaped; ids are offsets into it), and each complete Markdown
  // block as `blocks`, rendered and sanitized once on the server. The page shows the blocks
  // formatted and the rest of the text, the block still being written, as plain text.

  var texts = new WeakMap(); // root -> { text: all the text so far, blocksEnd: where blocks end }

  function textOf(root) {
    var state = texts.get(root);
    if (!state) {
      // Until the first snapshot: what the page was rendered with.
      var blocks = part(root, "blocks");
      var end = blocks ? parseInt(blocks.getAttribute("data-end"), 10) || 0 : 0;
      state = { text: "", blocksEnd: end };
      texts.set(root, state);
    }
    return state;
  }

  function showTail(root) {
    var state = textOf(root);
    var tail = part(root, "tail");
    // Plain text, without the Markdown marks that the block will turn into bold or a heading.
    var rest = state.text.slice(state.blocksEnd).replace(/^\s+/, "").replace(/\*\*|__/g, "").replace(/^#{1,6}[ \t]+/, "");
    if (tail && tail.textContent !== rest) tail.textContent = rest;
    document.dispatchEvent(new CustomEvent("crossroads:text", { detail: { root: root } }));
  }

  // Blocks rendered one by one split a list in two; joined here they are the list the final
  // rendering has, so nothing jumps at `done`.
  function joinLists(container) {
    var child = container.firstElementChild;
    while (child) {
      var next = child.nextElementSibling;
      if (next && next.tagName === child.tagName && (child.tagName === "UL" || child.tagName === "OL")) {
        while (next.firstChild) child.appendChild(next.firstChild);
        next.remove();
      } else {
        child = next;
      }
    }
  }

  document.addEventListener("snapshot", function (event) {
    var root = streamRoot(event);
    if (!root) return;
    textOf(root).text = unescapeText(event.detail.data);
    showTail(root);
  });

  document.addEventListener("chunk", function (event) {
    var root = streamRoot(event);
    if (!root) return;
    textOf(root).text += unescapeText(event.detail.data);
    showTail(root);
  });

  // "<start> <end>" then the blocks' HTML: all blocks from 0 (on every connection; a page that
  // has them already keeps what it shows, so nothing is announced twice), or the next ones.
  document.addEventListener("blocks", function (event) {
    var root = streamRoot(event);
    var container = root && part(root, "blocks");
    if (!container) return;
    var data = event.detail.data;
    var cut = data.indexOf("\n");
    var range = data.slice(0, cut).split(" ");
    var start = parseInt(range[0], 10), end = parseInt(range[1], 10);
    var state = textOf(root);
    var template = document.createElement("template");
    template.innerHTML = data.slice(cut + 1);
    if (start === 0 && end !== state.blocksEnd) {
      container.replaceChildren(template.content);
    } else if (start === state.blocksEnd && start > 0) {
      container.appendChild(template.content);
    } else if (!(start === 0 && end === state.blocksEnd)) {
      return; // out of step: the next connection starts from 0 again
    }
    joinLists(container);
    state.blocksEnd = end;
    showTail(root);
  });

  document.addEventListener("done", function (event) {
    var root = streamRoot(event);
    if (!root) return;
    clearTimeout(conn(root).silence);
    var hadFocus = root.contains(document.activeElement);
    var template = document.createElement("template");
    template.innerHTML = event.detail.data;
    var fresh = Array.prototype.slice.call(template.content.children);
    root.replaceWith(template.content);
    fresh.forEach(function (el) {
      htmx.process(el);
      showWriter(WRITER_OF_SOURCE[el.getAttribute("data-source")]);
    });
    // ui.js restores drafts, moves focus and scrolls.
    document.dispatchEvent(new CustomEvent("crossroads:done", { detail: { fresh: fresh, hadFocus: hadFocus } }));
  });
})();
