// Suyun console: live updates. The page works without this script (every action is a plain
// link or form); with it, the page follows the server's event stream (/console/events): when
// the data of the viewer's scope changes, the page's content is fetched again and swapped in,
// and the stale banner shows since when the status store has been unreachable.
"use strict";
(function () {
  const source = document.body.dataset.live;
  if (!source || !window.EventSource) return;
  let revision = null;
  let pending = false;
  let busy = false;

  function banner(staleSince) {
    const box = document.getElementById("stale");
    if (!box) return;
    if (staleSince) {
      document.getElementById("stale-since").textContent = staleSince;
      box.hidden = false;
    } else {
      box.hidden = true;
    }
  }

  // A form being filled in is not replaced under the user's hands: the refresh waits.
  function editing() {
    const active = document.activeElement;
    return active && active.closest("#content") && /^(INPUT|SELECT|TEXTAREA)$/.test(active.tagName);
  }

  async function refresh() {
    if (busy) { pending = true; return; }
    if (editing()) { pending = true; return; }
    busy = true;
    pending = false;
    try {
      const response = await fetch(window.location.href, { credentials: "same-origin", cache: "no-store" });
      if (!response.ok) return;
      const doc = new DOMParser().parseFromString(await response.text(), "text/html");
      const next = doc.getElementById("content");
      const current = document.getElementById("content");
      if (next && current) current.replaceWith(next);
    } catch (e) {
      // The next event tries again.
    } finally {
      busy = false;
    }
  }

  document.addEventListener("focusout", function () {
    if (pending) setTimeout(function () { if (pending && !editing()) refresh(); }, 200);
  });

  const events = new EventSource(source);
  events.addEventListener("state", function (event) {
    let state;
    try { state = JSON.parse(event.data); } catch (e) { return; }
    banner(state.staleSince);
    if (revision !== null && state.revision !== revision) refresh();
    revision = state.revision;
    document.body.dataset.revision = String(revision);
  });
})();
