"""The ground floor: settings, errors, the grant, the journal, the store protocol, metrics, state."""
