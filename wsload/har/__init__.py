"""``wsload har``: from a browser recording (a DevTools HAR) to a protocol profile.

``reader`` reads the HAR, ``socketio`` decodes Engine.IO/Socket.IO packets, ``messages``
turns frames into named messages, ``infer`` (with ``auth_infer``, ``fields``, ``spans``,
``grammar_infer``) infers the profile, ``writer`` writes it without secrets, ``cli`` is
the command.
"""
