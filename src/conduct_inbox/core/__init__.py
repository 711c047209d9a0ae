"""Pure decisions: classification, commands, tokens, routing, recusal, SLA rules. No I/O library, no clock."""
