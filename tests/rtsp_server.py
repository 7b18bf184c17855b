"""A real RTSP server for tests and benchmarks: GStreamer's rtsp-server serving an MP4 (H.264 + AAC) at
rtsp://127.0.0.1:PORT/cam, paced at real time, from the file's start for every client.

Run it with the system python3, which has `gi` (the project's venv does not):

    /usr/bin/python3 tests/rtsp_server.py FILE.mp4 PORT     # prints "ready rtsp://127.0.0.1:PORT/cam", serves until killed
    /usr/bin/python3 tests/rtsp_server.py --check           # exit 0, or 1 and what is missing

Needs Debian's python3-gst-1.0, gir1.2-gst-rtsp-server-1.0 and gstreamer1.0-plugins-{base,good,bad,ugly}.
"""

from __future__ import annotations

import sys

ELEMENTS = ("filesrc", "qtdemux", "h264parse", "rtph264pay", "aacparse", "rtpmp4gpay", "queue")


def missing() -> str | None:
    """What this machine lacks to serve RTSP (None: nothing)."""
    try:
        import gi

        gi.require_version("Gst", "1.0")
        gi.require_version("GstRtspServer", "1.0")
        from gi.repository import Gst, GstRtspServer  # noqa: F401
    except (ImportError, ValueError) as exc:
        return f"GStreamer's Python bindings or rtsp-server are not installed ({exc})"
    Gst.init(None)
    absent = [name for name in ELEMENTS if Gst.ElementFactory.find(name) is None]
    return f"GStreamer elements missing: {', '.join(absent)}" if absent else None


def serve(path: str, port: str) -> None:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f'( filesrc location="{path}" ! qtdemux name=d '
        "d.video_0 ! queue ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 "
        "d.audio_0 ! queue ! aacparse ! rtpmp4gpay name=pay1 pt=97 )"
    )
    server.get_mount_points().add_factory("/cam", factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on 127.0.0.1:{port}")
    print(f"ready rtsp://127.0.0.1:{port}/cam", flush=True)
    GLib.MainLoop().run()


def main() -> None:
    if sys.argv[1:] == ["--check"]:
        problem = missing()
        print(problem or "ok")
        sys.exit(1 if problem else 0)
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    serve(sys.argv[1], sys.argv[2])


if __name__ == "__main__":
    main()
