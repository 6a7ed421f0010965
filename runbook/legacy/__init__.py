"""The legacy (Supabase-era) database the users' password hashes are staged from: what
step stage-legacy-users reads there (source) and what it makes of it (users)."""
