"""The Kivy/KivyMD desktop app: thin screens over view-models over the worker facade.

Importing this package is cheap and opens no window; ``app.gui`` (which imports
kivymd) is imported only once a display is known to exist.
"""
