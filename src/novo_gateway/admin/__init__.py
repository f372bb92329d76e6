"""The operator dashboard (`/admin`): customers, the reporter and webhooks, for operators only."""
