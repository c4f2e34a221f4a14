output "jobs" {
  description = "Scheduler job name and schedule by entry point."
  value       = { for key, j in google_cloud_scheduler_job.this : key => { name = j.name, schedule = j.schedule } }
}
