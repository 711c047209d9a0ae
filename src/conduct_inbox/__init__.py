"""conduct-inbox: runs a Code of Conduct committee's conduct@ mailbox."""
