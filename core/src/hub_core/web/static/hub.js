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

  // Accounts: while "Check all" runs, refresh its progress in place.
  const progress = document.getElementById("check-progress");
  if (progress && progress.dataset.refresh) {
    const every = Number(progress.dataset.refresh) * 1000;
    const refresh = async () => {
      try {
        const answer = await fetch(window.location.href, { credentials: "same-origin" });
        if (!answer.ok) return;
        const page = new DOMParser().parseFromString(await answer.text(), "text/html");
        const fresh = page.getElementById("check-progress");
        if (!fresh) return;
        progress.replaceChildren(...fresh.childNodes);
        if (fresh.dataset.refresh) {
          setTimeout(refresh, every);
        } else {
          window.location.reload();  // the run ended: show the new verdicts
        }
      } catch (error) {
        setTimeout(refresh, every * 2);
      }
    };
    setTimeout(refresh, every);
  }
});
