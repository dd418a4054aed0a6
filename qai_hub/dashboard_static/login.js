// The login form: posts the password as JSON; the server sets an HttpOnly session cookie.
const form = document.getElementById("login-form");
const error = document.getElementById("login-error");

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  error.textContent = "";
  const password = document.getElementById("password").value;
  try {
    const answer = await fetch("/api/login", {
      method: "POST", headers: {"Content-Type": "application/json"}, credentials: "same-origin",
      body: JSON.stringify({password}),
    });
    if (answer.ok) {
      window.location.assign("/");
      return;
    }
    const body = await answer.json().catch(() => ({}));
    error.textContent = body.error || `login failed (${answer.status})`;
  } catch (failure) {
    error.textContent = `the server did not answer: ${failure}`;
  }
});
