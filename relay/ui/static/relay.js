/* relay's dashboard: live jobs (SSE), copy buttons, delete confirmations. The pages work without it. */
"use strict";

function followJobs() {
  const section = document.getElementById("jobs");
  const url = section && section.dataset.live;
  if (!url) return;
  const stream = new EventSource(url);
  // Server-rendered and escaped by relay's templates: swapped in as the page itself would show it.
  stream.addEventListener("jobs", (event) => { section.innerHTML = event.data; });
  window.addEventListener("pagehide", () => stream.close());
}

function copyButtons() {
  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.hidden = false;
    button.addEventListener("click", async () => {
      const field = document.getElementById(button.dataset.copy);
      field.select();
      try {
        await navigator.clipboard.writeText(field.value);
      } catch {
        document.execCommand("copy");  // plain HTTP: no clipboard API outside secure contexts
      }
      button.textContent = "Copied";
    });
  }
}

function confirmations() {
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
}

document.addEventListener("DOMContentLoaded", () => { followJobs(); copyButtons(); confirmations(); });
