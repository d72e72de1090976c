// Progressive enhancement only: every page works without this file.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  // The confirmation's heading, or an error summary, takes the focus.
  const focus = document.querySelector("[data-focus]");
  if (focus) focus.focus();

  // Connect: "Checking with {provider}…" until the answer arrives. The form is never
  // locked: a person who stopped a slow page must be able to send it again, and the server
  // makes one check of a form sent twice (its one-time form id) and answers both alike.
  for (const form of document.querySelectorAll("form[data-checking]")) {
    const status = form.querySelector("[role=status]");
    form.addEventListener("submit", () => {
      if (status) status.textContent = form.dataset.checking;
    });
    // Back to this page from the history: nothing is being checked for it now.
    window.addEventListener("pageshow", () => { if (status) status.textContent = ""; });
  }

  // A host session's confirmation, framed by the host: tell the parent window, at the
  // return address's own origin only (never "*"). The server adds these attributes only
  // when that origin may frame the Hub.
  const back = document.querySelector("[data-post-origin]");
  if (back && window.parent !== window) {
    window.parent.postMessage(JSON.parse(back.dataset.postMessage), back.dataset.postOrigin);
  }

  // Accounts: while "Check all" runs, reload the page every few seconds to show its
  // progress, then its verdicts. A reload, not fetch(): the CSP allows no connect-src. Not
  // while anything on the page has the focus (a form, a link a keyboard reached, a screen
  // reader's place): a reload would throw it back to the top.
  const progress = document.getElementById("check-progress");
  if (progress && progress.dataset.refresh) {
    const every = Number(progress.dataset.refresh) * 1000;
    const reload = () => {
      const active = document.activeElement;
      if (active && active !== document.body) {
        setTimeout(reload, every);
      } else {
        window.location.reload();
      }
    };
    setTimeout(reload, every);
  }
});
