"""HTML pages. Thin: read through selectors, change through services.

``pages`` the list of one's requests, the create form and a request's page; ``actions`` approve,
reject, cancel, complete and extend; ``approvals`` the approver's queue and the nav's count;
``inventory`` the inventory and its sync; ``credentials`` a Windows password revealed on demand.
"""
