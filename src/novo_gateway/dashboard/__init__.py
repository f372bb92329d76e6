"""The customer dashboard (`/dashboard`): usage, its plot, keys and billing in a browser."""
