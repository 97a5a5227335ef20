from django.urls import URLPattern, URLResolver, path

from apps.workers import views

urlpatterns: list[URLPattern | URLResolver] = [
    path("workers/", views.WorkerListView.as_view(), name="workers-list"),
    path("workers/<uuid:worker_id>/", views.WorkerDetailView.as_view(), name="workers-detail"),
    path("workers/<uuid:worker_id>/drain/", views.WorkerDrainView.as_view(), name="workers-drain"),
    path("workers/<uuid:worker_id>/undrain/", views.WorkerUndrainView.as_view(), name="workers-undrain"),
]
