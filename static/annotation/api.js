/*
 * The HTTP layer. API: see DESIGN.md ("API contract"). Session auth; the CSRF token comes
 * from the csrftoken cookie and goes back in the X-CSRFToken header.
 */

export function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

export class ApiError extends Error {
  constructor(status, data) {
    super(`HTTP ${status}`);
    this.status = status;
    this.data = data;
  }
}

/** One JSON request; resolves to {status, data} whatever the status, rejects on a network error. */
export async function api(method, url, body) {
  const response = await fetch(url, {
    method,
    credentials: "same-origin",
    headers: {
      Accept: "application/json",
      "Content-Type": "application/json",
      "X-CSRFToken": csrfToken(),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  if (response.status !== 204) {
    try {
      data = await response.json();
    } catch {
      data = null;
    }
  }
  return { status: response.status, data };
}

/** The page's URL templates name assignment 0 (".../assignments/0/judgement/"). */
export function urlFor(template, assignmentId) {
  return template.replace("/0/", `/${assignmentId}/`);
}
