// #/jobs (admins): the newest asynchronous ingest jobs
// (`api/v1/jobs?limit=50`, every 5 s) and a lookup of one job by id.

import { get, seg } from "../api.js";
import { $, el, td, busy, clearError, formatSecs, say, showError } from "../dom.js";

const LIMIT = 50;
const REFRESH_MS = 5000;

export function enter(life) {
  clearError($("jobs-error"));
  clearError($("job-error"));
  $("jobs-table").tBodies[0].replaceChildren();
  $("jobs-empty").hidden = true;
  say($("job-result"), "");
  life.on($("job-lookup-form"), "submit", (event) => lookup(event, life));
  refresh(life);
  life.every(REFRESH_MS, () => refresh(life));
}

async function refresh(life) {
  let answer;
  try {
    answer = await get(`api/v1/jobs?limit=${LIMIT}`, { signal: life.signal });
  } catch (e) {
    showError($("jobs-error"), e);
    return;
  }
  if (life.ended) return;
  clearError($("jobs-error"));
  const jobs = (answer && answer.jobs) || [];
  $("jobs-table").tBodies[0].replaceChildren(...jobs.map((job) => {
    const ids = job.event_ids || [];
    const events = ids.length > 3 ? `${ids.length} (${ids[0]}…${ids[ids.length - 1]})` : ids.join(", ");
    return el("tr", { data: { job: job.job_id } },
      el("th", { scope: "row" }, el("code", {}, job.job_id)),
      td(job.status, job.status === "failed" ? "bad" : ""),
      td(formatSecs(job.created)),
      td(formatSecs(job.updated)),
      td(events || "–"),
      td(job.error || ""));
  }));
  $("jobs-empty").hidden = jobs.length > 0;
}

async function lookup(event, life) {
  event.preventDefault();
  const id = $("job-id").value.trim();
  const error = $("job-error");
  const result = $("job-result");
  clearError(error);
  say(result, "");
  if (!id) {
    showError(error, new Error("Enter the job id of a 202 answer."));
    $("job-id").focus();
    return;
  }
  const button = event.submitter || $("job-lookup-form").querySelector("button");
  try {
    const job = await busy(button, () => get(`api/v1/jobs/${seg(id)}`, { signal: life.signal }));
    say(result, JSON.stringify(job, null, 2));
  } catch (e) {
    if (e.status === 404) say(result, "not found");
    else showError(error, e);
  }
}
