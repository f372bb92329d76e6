"""The home page (`GET /`): endpoints, pricing and a curl quick start, as static-safe HTML.

Every value that comes from settings or the request is escaped with `html.escape` before it goes
into the template. The page has no inline style or script, so its Content-Security-Policy can
forbid both; its CSS is served from `/static/home.css`.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from html import escape
from string import Template
from typing import Final

from novo_gateway.kit.config import Settings
from novo_gateway.metering import pricing

CSS_PATH: Final = "/static/home.css"

SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


@dataclass(frozen=True, slots=True)
class Endpoint:
    method: str
    path: str
    description: str
    auth: str


# The public contract's endpoints, grouped as the original product's README listed them.
ENDPOINTS: Final[tuple[tuple[str, tuple[Endpoint, ...]], ...]] = (
    (
        "Accounts and keys",
        (
            Endpoint("POST", "/auth/register", "Register; returns your first API key", "none"),
            Endpoint("POST", "/auth/login", "Log in; lists your API keys", "password"),
            Endpoint("POST", "/auth/api-keys", "Create another API key", "key"),
            Endpoint("GET", "/auth/api-keys", "List your API keys", "key"),
            Endpoint("DELETE", "/auth/api-keys/{id}", "Revoke an API key", "key"),
        ),
    ),
    (
        "Novo API (billed per call)",
        (
            Endpoint("GET", "/api/v1/insights", "Marketing insights", "key"),
            Endpoint("POST", "/api/v1/audience/analyze", "Analyze an audience", "key"),
            Endpoint("POST", "/api/v1/campaign/generate", "Generate a draft campaign", "key"),
            Endpoint("POST", "/api/v1/notifications/send", "Queue a notification", "key"),
            Endpoint("GET", "/api/v1/analytics?period=7d", "Analytics for a period", "key"),
            Endpoint("POST", "/api/v1/bulk/process", "Process up to 1,000 items", "key"),
            Endpoint("GET", "/api/v1/health", "Health of the API (free)", "none"),
        ),
    ),
    (
        "Billing",
        (
            Endpoint("GET", "/billing/usage", "Usage and estimated cost this period", "key"),
            Endpoint("GET", "/billing/usage/endpoints?days=30", "Usage by endpoint", "key"),
            Endpoint("GET", "/billing/invoices", "Invoice history", "key"),
            Endpoint("POST", "/billing/portal", "A Stripe billing portal link", "key"),
            Endpoint("POST", "/billing/payment-method", "A Stripe link to add a card", "key"),
            Endpoint("GET", "/billing/subscription", "Subscription details", "key"),
            Endpoint("POST", "/billing/subscription/cancel", "Cancel at period end", "key"),
        ),
    ),
    (
        "Service",
        (
            Endpoint("GET", "/health", "Gateway and database health", "none"),
            Endpoint("GET", "/docs", "Interactive OpenAPI documentation", "none"),
        ),
    ),
)

_PAGE: Final = Template("""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Novo Gateway</title>
<link rel="icon" href="/favicon.ico" sizes="16x16">
<link rel="stylesheet" href="$css">
</head>
<body>
<main>
<header>
<h1>Novo Gateway</h1>
<p>Usage-billed access to the Novo marketing API. Version $version.</p>
<nav class="links" aria-label="Dashboards">
<a href="/dashboard">Your dashboard</a>: usage, API keys and invoices$operator_link
· <a href="/docs">API documentation</a>
</nav>
</header>

<section id="pricing">
<h2>Pricing</h2>
<ul class="pricing">
<li><strong>$free_calls</strong> units free every month</li>
<li>then <strong>$cost_per_call</strong> per unit</li>
</ul>
<p>A plain call is one unit; some routes count more. Example: $example_calls one-unit calls in a
month cost $example_cost. Calls answered with an error (status above $billable_max) are not
billed.</p>
</section>

<section id="quick-start">
<h2>Quick start</h2>
<h3>1. Register and get your API key</h3>
<pre><code>curl -X POST $base/auth/register \\
  -H "Content-Type: application/json" \\
  -d '{"email": "you@example.com", "password": "a long passphrase", "name": "You"}'</code></pre>
<p>The response shows your key (<code>nk_…</code>) once: keep it safe.</p>
<h3>2. Call the API with your key, in any of three ways</h3>
<pre><code># Authorization header
curl $base/api/v1/insights -H "Authorization: Bearer nk_your_api_key"

# X-API-Key header
curl "$base/api/v1/analytics?period=7d" -H "X-API-Key: nk_your_api_key"

# api_key query parameter (headers are safer: URLs end up in logs)
curl "$base/api/v1/insights?api_key=nk_your_api_key"</code></pre>
<h3>3. Check your usage</h3>
<pre><code>curl $base/billing/usage -H "Authorization: Bearer nk_your_api_key"</code></pre>
<p>Or sign in to <a href="/dashboard">your dashboard</a> with your email and password to see it
plotted day by day, manage your keys and your subscription, and download your invoices.</p>
</section>

<section id="endpoints">
<h2>Endpoints</h2>
$endpoints
</section>
</main>
</body>
</html>
""")

CSS: Final = """\
:root { color-scheme: light dark; --accent: #4f46e5; --muted: #6b7280; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; }
main { max-width: 54rem; margin: 0 auto; padding: 2rem 1.25rem 4rem; }
h1 { margin-bottom: 0.25rem; color: var(--accent); }
h2 { margin-top: 2.5rem;
     border-bottom: 1px solid color-mix(in srgb, currentColor 20%, transparent); }
h3 { font-size: 1rem; margin-top: 1.5rem; }
header p, .muted { color: var(--muted); }
pre { padding: 0.75rem 1rem; overflow-x: auto; border-radius: 6px;
      background: color-mix(in srgb, currentColor 8%, transparent); }
code { font: 0.9em/1.4 ui-monospace, SFMono-Regular, Menlo, monospace; }
.pricing { display: flex; gap: 1rem; padding: 0; list-style: none; flex-wrap: wrap; }
.pricing li { padding: 0.75rem 1rem; border-radius: 6px;
              border: 1px solid color-mix(in srgb, currentColor 20%, transparent); }
table { width: 100%; border-collapse: collapse; margin-bottom: 1.5rem; }
th, td { text-align: left; padding: 0.35rem 0.5rem; vertical-align: top;
         border-bottom: 1px solid color-mix(in srgb, currentColor 12%, transparent); }
caption { text-align: left; font-weight: 600; padding: 0.5rem 0; }
.method { font-weight: 600; width: 5rem; }
.links { margin-top: 1rem; }
.links a { font-weight: 600; color: var(--accent); }
"""


def money(amount: Decimal) -> str:
    """`$0.001`: plain notation, no trailing zeros, no exponent."""
    text = format(amount.normalize(), "f")
    return f"${text}"


def _endpoint_tables() -> str:
    tables = []
    for title, endpoints in ENDPOINTS:
        rows = "\n".join(
            f'<tr><td class="method">{escape(e.method)}</td><td><code>{escape(e.path)}</code></td>'
            f"<td>{escape(e.description)}</td><td>{escape(e.auth)}</td></tr>"
            for e in endpoints
        )
        tables.append(
            f"<table>\n<caption>{escape(title)}</caption>\n"
            "<thead><tr><th>Method</th><th>Path</th><th>What it does</th><th>Auth</th></tr>"
            f"</thead>\n<tbody>\n{rows}\n</tbody>\n</table>"
        )
    return "\n".join(tables)


_TABLES: Final = _endpoint_tables()


def render_home(settings: Settings, base_url: str, version: str) -> str:
    """The page for these settings; `base_url` is the gateway's address used in the examples."""
    free = settings.free_tier_calls
    example_calls = max(10_000, free * 10)
    exact = pricing.estimated_cost(example_calls, free, settings.cost_per_call)
    example_cost = pricing.format_charge(exact)
    if pricing.to_cents(exact) != exact:  # the exact estimate beside the charge, only then
        example_cost += f" ({pricing.format_cost(exact)} before rounding to cents)"
    return _PAGE.substitute(
        css=escape(CSS_PATH),
        version=escape(version),
        free_calls=escape(f"{free:,}"),
        cost_per_call=escape(money(settings.cost_per_call)),
        example_calls=escape(f"{example_calls:,}"),
        example_cost=escape(example_cost),
        billable_max=escape(str(settings.billable_status_max)),
        base=escape(base_url.rstrip("/")),
        endpoints=_TABLES,
        # The operator dashboard exists only when ADMIN_TOKEN is set; never link to a 404.
        operator_link=' · <a href="/admin">Operator dashboard</a>' if settings.admin_token else "",
    )
