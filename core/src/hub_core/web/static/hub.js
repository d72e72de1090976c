// Progressive enhancement only: every page works without this file.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  // The confirmation's heading, or an error summary, takes the focus.
  const focus = document.querySelector("[data-focus]");
  if (focus) focus.focus();

  // Connect: one submit, then "Checking with {provider}…" until the answer arrives.
  for (const form of document.querySelectorAll("form[data-checking]")) {
    form.addEventListener("submit", (event) => {
      if (form.dataset.sent) {
        event.preventDefault();
        return;
      }
      form.dataset.sent = "1";
      const button = form.querySelector("button[type=submit]");
      const status = form.querySelector("[role=status]");
      // Disabled after this event: the browser sends the form first.
      setTimeout(() => { if (button) button.disabled = true; }, 0);
      if (status) status.textContent = form.dataset.checking;
    });
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
  // while someone is using a form on the page: their choice would be lost.
  const progress = document.getElementById("check-progress");
  if (progress && progress.dataset.refresh) {
    const every = Number(progress.dataset.refresh) * 1000;
    const reload = () => {
      const active = document.activeElement;
      if (active && active.closest("form")) {
        setTimeout(reload, every);
      } else {
        window.location.reload();
      }
    };
    setTimeout(reload, every);
  }
});
