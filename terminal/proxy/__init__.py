"""The portal's SSH recording proxy for CLI sessions (`passport proxy`, ssh, scp, sftp, ssh -L).

The CLI opens a WebSocket (consumer: the route's contract; auth: bearer token, no cookie, the
grant rules), whose binary frames are the raw bytes of the engineer's SSH connection to an
asyncssh server in this process (server: host certificate from hostkey, user certificates of this
grant only). Once logged in, the portal opens its own SSH connection to the instance over a
Session Manager data channel (upstream) and relays each channel (relay: sessions; forward:
ssh -L), recording every shell and command as the browser terminal records (recording), with file
transfers seen by the observers (observers) and everything else in the Logbook (logbook). The
connection ends with the request, from Live now, or when the client leaves (session).
"""
