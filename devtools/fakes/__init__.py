"""Fakes of the outside world, served on loopback for tests and the local stack.

``world``: the video source, the processor, Instagram and Suno, with faults settable at run time.
"""
