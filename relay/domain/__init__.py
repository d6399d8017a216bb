"""The rules, apart from any database: plain functions over the value types of `relay.models`.

A backend reads what it needs, calls these inside its own transaction and writes what they answer; it holds
SQL and transactions, never a rule. No I/O here, and time is passed in.
"""
