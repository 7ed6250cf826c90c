"""Pix Me! offline renderer.

A local stand-in for Gemini's native image generation: an HTTP server that
speaks the `generateContent` JSON protocol (so the google-genai SDK works
against it unchanged) and renders avatars with classic computer vision on the
CPU: mediapipe's shipped face models plus non-photorealistic filters. It runs
in its own virtualenv (`.venv-renderer`, see requirements.txt).
"""

__version__ = "1"
